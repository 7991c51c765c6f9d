#pragma once
// Real gRPC clients for integration tests, built on the same channel code the agent uses.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "wsa/agent/v1/agent_service.grpc.pb.h"
#include "wsa/control/channel.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"

namespace wsa::test {

struct ControlClient {
  explicit ControlClient(const std::string& url, const control::ChannelOptions& options = {}) {
    auto parsed = control::parseControlUrl(url);
    if (!parsed.ok()) throw std::runtime_error(parsed.error());
    auto ch = control::makeChannel(*parsed, options);
    if (!ch.ok()) throw std::runtime_error(ch.error());
    channel = *ch;
    agent = agent::v1::Agent::NewStub(channel);
    overlay = overlay::v1::Overlay::NewStub(channel);
  }
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<agent::v1::Agent::Stub> agent;
  std::unique_ptr<overlay::v1::Overlay::Stub> overlay;
};

// A call context with a token (or none when empty) and a deadline.
inline std::unique_ptr<grpc::ClientContext> callContext(
    const std::string& token, std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) control::prepareContext(*ctx, token);
  ctx->set_deadline(std::chrono::system_clock::now() + deadline);
  return ctx;
}

}  // namespace wsa::test
