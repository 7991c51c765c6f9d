#pragma once
// Relay routing by WireGuard key, shared by controld's built-in relay (Hub: peers with a tunnel)
// and the relay-only node (TicketRelay: peers whose tickets list each other). The router knows
// which stream receives for which key and counts what happens to each packet; whether a source
// may reach a destination is the owner's authorizer. Not thread-safe: the owner's lock guards it
// (and the authorizer runs under that lock).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "wsa/overlay/v1/relay.pb.h"

namespace wsa::metrics {
class Families;
}

namespace wsa::controld {

// Every open server stream. Streams are owned by shared_ptrs (the stream holds itself until
// its OnDone), so the hub can keep one alive while it calls closeStream outside its lock.
class StreamHandle : public std::enable_shared_from_this<StreamHandle> {
 public:
  virtual ~StreamHandle() = default;
  // Ends the stream (server shutdown, replaced by a newer one). Idempotent.
  virtual void closeStream(const std::string& reason) = 0;
};

class RelaySink : public virtual StreamHandle {
 public:
  // Queues one packet from `source_key`; false when the queue is full (the packet is dropped).
  virtual bool pushPacket(const std::string& source_key, const std::string& payload) = 0;
};

struct RelayCounters {
  uint64_t relay_forwarded = 0;
  uint64_t relay_no_route = 0;
  uint64_t relay_denied = 0;
  uint64_t relay_queue_full = 0;
};

// Why a relay stream is refused; the service turns it into a gRPC status.
struct RelayRefusal {
  enum class Code { kInvalidArgument, kPermissionDenied, kResourceExhausted, kUnavailable } code;
  std::string message;
};

// What a relay stream (overlay_service.cc's reactor) asks of the relay behind it: the built-in
// one (the hub, for one authenticated caller) or a relay-only node's (TicketRelay).
class RelayBackend {
 public:
  virtual ~RelayBackend() = default;
  // The stream starts / has ended (OnDone). A refusal finishes the stream at once.
  virtual std::optional<RelayRefusal> openRelayStream(StreamHandle* stream) = 0;
  virtual void relayStreamDone(RelaySink* sink) = 0;
  // The first message: binds `sink` to hello.hello_key() (hello.ticket() where it counts).
  virtual std::optional<RelayRefusal> hello(RelaySink* sink,
                                            const overlay::v1::RelayRequest& hello) = 0;
  // A later message's ticket (a fresher one). The built-in relay ignores tickets.
  virtual void ticket(RelaySink* sink, const overlay::v1::RelayTicket& ticket) = 0;
  virtual void relay(RelaySink* from, const std::string& dest_key, const std::string& payload) = 0;
};

class RelayRouter {
 public:
  struct Binding {
    std::string key;
    std::string owner;  // the hub: the peer id that published the key when the stream bound
  };

  // Binds `sink` to `key` (a sink that was bound to another key leaves it). Returns the sink
  // that received for `key` before, which the caller closes, or null.
  RelaySink* bind(RelaySink* sink, const std::string& key, std::string owner = {});
  // Forgets `sink`; false if it was not bound.
  bool unbind(RelaySink* sink);
  // Forgets whoever receives for `key`; returns that sink (the caller closes it), or null.
  RelaySink* unbindKey(const std::string& key);
  const Binding* binding(RelaySink* sink) const;
  RelaySink* sinkFor(const std::string& key) const;
  size_t size() const { return bindings_.size(); }

  // Forwards one datagram from `from` to the stream bound to `dest_key` when
  // `allowed(source binding, destination binding)`; counts the outcome: denied (unbound source,
  // or not allowed), no_route (nobody receives for dest_key), queue_full, forwarded.
  template <typename Allowed>
  void route(RelaySink* from, const std::string& dest_key, const std::string& payload,
             Allowed&& allowed) {
    auto src = bindings_.find(from);
    if (src == bindings_.end()) {
      ++counters_.relay_denied;
      return;
    }
    auto dst = by_key_.find(dest_key);
    if (dst == by_key_.end()) {
      ++counters_.relay_no_route;
      return;
    }
    auto dst_binding = bindings_.find(dst->second);
    if (dst_binding == bindings_.end() || !allowed(src->second, dst_binding->second)) {
      ++counters_.relay_denied;
      return;
    }
    if (dst->second->pushPacket(src->second.key, payload)) {
      ++counters_.relay_forwarded;
    } else {
      ++counters_.relay_queue_full;
    }
  }

  const RelayCounters& counters() const { return counters_; }
  // wsa_controld_relay_packets_total{result="forwarded|no_route|denied|queue_full"}.
  void collect(metrics::Families& out) const;

 private:
  std::map<std::string, RelaySink*> by_key_;
  std::map<RelaySink*, Binding> bindings_;
  RelayCounters counters_;
};

}  // namespace wsa::controld
