#pragma once
// AgentApi over gRPC's callback client API. Completions arrive on gRPC threads and are posted
// to the agent's loop.

#include <chrono>
#include <memory>
#include <string>

#include "agent/api.h"
#include "wsa/common/result.h"
#include "wsa/control/channel.h"

namespace asio {
class io_context;
}

namespace wsa::agent {

struct GrpcApiOptions {
  control::ChannelOptions channel;
  std::chrono::milliseconds call_timeout{30000};
  // Returns the token for each call (read fresh so that a rotated token file takes effect).
  std::function<std::string()> token;
};

Result<std::unique_ptr<AgentApiFactory>> makeGrpcApiFactory(asio::io_context& io,
                                                            const control::ControlUrl& url,
                                                            GrpcApiOptions options);

}  // namespace wsa::agent
