#pragma once
// gRPC channels to the control server and per-call metadata. The token is attached to every
// call; it is never logged.

#include <chrono>
#include <memory>
#include <string>

#include "wsa/common/result.h"
#include "wsa/control/url.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace wsa::control {

inline constexpr const char* kApiVersion = "1.0";

struct ChannelOptions {
  std::string ca_file;  // PEM roots for https (default: system roots)
  std::chrono::milliseconds keepalive_time{10000};
  std::chrono::milliseconds keepalive_timeout{5000};
};

Result<std::shared_ptr<grpc::Channel>> makeChannel(const ControlUrl& url,
                                                   const ChannelOptions& options = {});
// Adds "authorization: Bearer <token>" (none when `token` is empty) and the API version to a call.
void prepareContext(grpc::ClientContext& context, const std::string& token);

}  // namespace wsa::control
