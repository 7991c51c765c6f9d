#pragma once
// Authentication and bookkeeping shared by the gRPC services. Include from service .cc files.

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>

#include "controld/context.h"

namespace wsa::controld {

inline constexpr const char* kAuthorizationHeader = "authorization";
inline constexpr const char* kApiVersionHeader = "wsa-api-version";
inline constexpr int kApiMajor = 1;
inline constexpr int kApiMinor = 0;

struct AuthResult {
  std::optional<Principal> who;
  grpc::Status status;
};

// Reads "authorization: Bearer <token>" and "wsa-api-version". Never logs the token.
AuthResult authenticate(ServiceContext& ctx, const grpc::ServerContextBase& call,
                        const char* method);

}  // namespace wsa::controld
