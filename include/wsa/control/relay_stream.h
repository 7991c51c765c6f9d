#pragma once
// The client side of Overlay.Relay: WireGuard datagrams to and from peers, carried over the
// control connection when direct UDP does not work. Used by the agent and by `wsa`.
//
// send() is thread-safe and never blocks: packets queue (bounded) while a write is in flight and
// go out together in the next message; beyond the bound they are dropped and counted (WireGuard
// and TCP above it recover from loss, not from a stalled sender). Packets sent before the server
// acknowledged the hello are dropped too. Callbacks other than on_done are handed to `post`.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace wsa::control {

struct RelayStreamStats {
  uint64_t packets_sent = 0;      // handed to gRPC
  uint64_t packets_received = 0;  // delivered to on_packets
  uint64_t dropped_queue_full = 0;
  uint64_t dropped_not_ready = 0;  // before the hello was acknowledged, or after the end
  size_t queued = 0;               // waiting for the write in flight

  // Adds the counts of another (ended) stream; `queued` is the other's.
  RelayStreamStats& operator+=(const RelayStreamStats& o) {
    packets_sent += o.packets_sent;
    packets_received += o.packets_received;
    dropped_queue_full += o.dropped_queue_full;
    dropped_not_ready += o.dropped_not_ready;
    queued = o.queued;
    return *this;
  }
};

class RelayStream {
 public:
  using Key = std::array<uint8_t, 32>;
  using Packets = std::vector<std::pair<Key, std::string>>;  // (source key, datagram)
  struct Callbacks {
    // Runs a function on the owner's thread; called from gRPC threads.
    std::function<void(std::function<void()>)> post;
    std::function<void()> on_ready;           // the server acknowledged our hello (posted)
    std::function<void(Packets)> on_packets;  // posted
    // The stream ended (gRPC status code and message). Called once, on a gRPC thread.
    std::function<void(int code, std::string message)> on_done;
    // Optional: the call's context, before the call starts (to register it for cancellation);
    // valid until on_done returns.
    std::function<void(grpc::ClientContext*)> on_context;
    // Optional, not a callback: a serialized overlay.v1.RelayTicket sent with the hello (what
    // relay-only nodes require; the control server's built-in relay ignores it).
    std::string ticket;
  };
  static constexpr size_t kDefaultMaxQueued = 1024;
  static constexpr size_t kMaxPacketsPerMessage = 64;

  // Opens the stream; `hello_key` must be the key the caller published through Coordinate (or
  // the key of callbacks.ticket, for a relay-only node). An empty `token` sends no
  // authorization metadata (relay-only nodes take none: never hand them the control token).
  static std::shared_ptr<RelayStream> start(const std::shared_ptr<grpc::Channel>& channel,
                                            const std::string& token, const Key& hello_key,
                                            Callbacks callbacks,
                                            size_t max_queued = kDefaultMaxQueued);
  virtual ~RelayStream() = default;

  // Queues one datagram for the peer with public key `to`; false if it was dropped.
  virtual bool send(const Key& to, std::span<const uint8_t> datagram) = 0;
  // Sends a fresher ticket (serialized overlay.v1.RelayTicket) to the server, with the next
  // message or at once. Thread-safe; ignored once the stream ended.
  virtual void setTicket(const std::string& ticket) = 0;
  virtual void cancel() = 0;
  virtual bool ready() const = 0;
  virtual RelayStreamStats stats() const = 0;
};

}  // namespace wsa::control
