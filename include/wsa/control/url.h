#pragma once
// Control server URLs as users give them to `agent --url` and the client CLI:
//   http://host[:port]    plaintext gRPC over TCP (default port 80)
//   https://host[:port]   gRPC over TLS (default port 443)
//   unix:/path, unix:///path   plaintext gRPC over a unix socket

#include <string>

#include "wsa/common/result.h"

namespace wsa::control {

struct ControlUrl {
  enum class Scheme { kHttp, kHttps, kUnix };
  Scheme scheme = Scheme::kHttp;
  std::string host;         // TCP only (brackets stripped for IPv6)
  uint16_t port = 0;        // TCP only
  std::string path;         // unix only
  std::string grpc_target;  // what grpc::CreateChannel takes
  std::string text;         // normalized, for logs
};

Result<ControlUrl> parseControlUrl(const std::string& url);

}  // namespace wsa::control
