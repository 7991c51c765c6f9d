#include "controld/grpc_common.h"

#include "wsa/common/secret.h"
#include "wsa/common/strings.h"

namespace wsa::controld {

AuthResult authenticate(ServiceContext& ctx, const grpc::ServerContextBase& call,
                        const char* method) {
  AuthResult r;
  const auto& md = call.client_metadata();
  auto ver = md.find(kApiVersionHeader);
  if (ver != md.end()) {
    std::string v(ver->second.data(), ver->second.size());
    auto parts = split(v, '.');
    if (parts.empty() || parts[0] != std::to_string(kApiMajor)) {
      r.status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              "unsupported API version \"" + v + "\"; this server speaks " +
                                  std::to_string(kApiMajor) + "." + std::to_string(kApiMinor));
      return r;
    }
  }
  auto it = md.find(kAuthorizationHeader);
  std::string_view token;
  if (it != md.end()) {
    std::string_view value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.size() > kBearer.size() && iequals(value.substr(0, kBearer.size()), kBearer)) {
      token = trim(value.substr(kBearer.size()));
    }
  }
  if (token.empty()) {
    ctx.metrics->authFailure();
    ctx.log->warn("{}: refused a call from {} without a bearer token", method, call.peer());
    r.status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "missing \"authorization: Bearer <token>\" metadata");
    return r;
  }
  auto found = ctx.identities.find(sha256Hex(token));
  if (found == ctx.identities.end()) {
    ctx.metrics->authFailure();
    ctx.log->warn("{}: refused a call from {} with an unknown token", method, call.peer());
    r.status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown token");
    return r;
  }
  r.who = found->second;
  return r;
}

}  // namespace wsa::controld
