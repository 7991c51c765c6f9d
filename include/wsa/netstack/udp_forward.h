#pragma once
// Forwards overlay UDP to the workspace's own loopback, as LocalForwarder does TCP: a datagram
// to overlay port P goes to 127.0.0.1:P (::1:P when it came to an IPv6 overlay address) from a
// connected loopback UDP socket of its flow, and what comes back on that socket goes to the
// overlay peer from P. A flow is (the peer's address and port, our address and port).
//
// Bounds: at most max_flows flows (at the bound the least recently used one is closed,
// counted as evicted); a flow unused either way for idle_timeout is closed (expired), on the
// injected Clock. There is no queue: a datagram the loopback socket does not take at once is
// dropped and counted, as is a reply the stack does not take. Runs on the loop.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/net/flow_table.h"
#include "wsa/netstack/netstack.h"

namespace asio {
class io_context;
}

namespace wsa::netstack {

struct UdpForwardStats {
  uint64_t datagrams_to_local = 0, bytes_to_local = 0;
  uint64_t datagrams_from_local = 0, bytes_from_local = 0;
  // Drops by reason.
  uint64_t dropped_no_socket = 0;     // no loopback socket could be opened for a new flow
  uint64_t dropped_port_closed = 0;   // nothing listens on the loopback port (ICMP unreachable)
  uint64_t dropped_local_busy = 0;    // the loopback socket did not take the datagram at once
  uint64_t dropped_overlay_send = 0;  // the stack did not take a reply
  uint64_t local_errors = 0;          // a loopback socket failed; its flow was closed
  net::FlowTableStats flows;          // opened, evicted (at the bound), expired (idle)
  size_t flows_open = 0;
};

class UdpForwarder {
 public:
  struct Options {
    size_t max_flows = 1024;
    Duration idle_timeout = std::chrono::seconds(60);
    size_t max_batch = 64;  // datagrams read from one flow's socket per loop turn
  };
  struct Hooks {
    // Sends a reply along the flow to the overlay peer (Netstack::sendUdp).
    std::function<Status(const UdpInfo& flow, std::span<const uint8_t> payload)> reply;
    // No flow to this overlay port is left (Netstack::releaseUdpPort).
    std::function<void(uint16_t port)> port_idle;
  };

  UdpForwarder(asio::io_context& io, Clock& clock, Options options, Hooks hooks);
  ~UdpForwarder();  // closes every flow
  UdpForwarder(const UdpForwarder&) = delete;
  UdpForwarder& operator=(const UdpForwarder&) = delete;

  // A datagram from the overlay (Netstack::setUdpForwarder's callback).
  void forward(const UdpInfo& info, std::span<const uint8_t> payload);
  UdpForwardStats stats() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace wsa::netstack
