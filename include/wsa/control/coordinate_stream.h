#pragma once
// The client side of Overlay.Coordinate: a peer publishes its node and tunnels and receives the
// nodes of its peers, on one bidirectional stream over the control connection. Used by the
// agent (through its AgentApi, which adds its call accounting) and by `wsa`.
//
// gRPC's callback API: no thread of its own. send() is thread-safe and never blocks: requests
// queue (bounded, kMaxQueued) and are written one at a time; a request beyond the bound cancels
// the stream (a peer that cannot keep up starts over with a fresh view), and on_done reports
// it. Requests sent after the stream ended are dropped. Responses are handed to `post`.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace wsa::overlay::v1 {
class CoordinateRequest;
class CoordinateResponse;
}  // namespace wsa::overlay::v1

namespace wsa::control {

class CoordinateStream {
 public:
  struct Callbacks {
    // Runs a function on the owner's thread; called from gRPC threads.
    std::function<void(std::function<void()>)> post;
    std::function<void(overlay::v1::CoordinateResponse)> on_response;  // posted, in order
    // The stream ended (gRPC status code and message). Called once, on a gRPC thread, after the
    // last on_response was handed to `post`.
    std::function<void(int code, std::string message)> on_done;
    // Optional: the call's context, before the call starts (to register it for cancellation);
    // valid until on_done returns.
    std::function<void(grpc::ClientContext*)> on_context;
  };
  static constexpr size_t kMaxQueued = 64;

  // Opens the stream. The returned object stays valid (and the call alive) until on_done.
  static std::shared_ptr<CoordinateStream> start(const std::shared_ptr<grpc::Channel>& channel,
                                                 const std::string& token, Callbacks callbacks);
  virtual ~CoordinateStream() = default;

  // Queues a request (copied).
  virtual void send(const overlay::v1::CoordinateRequest& request) = 0;
  virtual void cancel() = 0;
};

}  // namespace wsa::control
