#pragma once
// The overlay's userspace TCP/IP stack: lwIP (compiled with our options, NO_SYS) on the Asio
// loop. IP packets come in through input() (from the WireGuard device) and go out through the
// Output callback (to the device); TCP connections surface as net::ByteStream, so the agent's
// servers (SSH, PTY, speed test, HTTP API) serve overlay connections exactly like kernel ones.
//
// lwIP keeps global state, so there is one Netstack per process; create() refuses a second.
// Everything, including the destructor, runs on the loop thread. The stack answers ICMP echo
// (ping) on its addresses itself.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::netstack {

struct Options {
  // The stack's own addresses: IPv4 and/or IPv6 ("100.64.0.5", "fd7a:115c:a1e0::5").
  std::vector<std::string> addresses;
  uint16_t mtu = 1420;
  // TCP connections at once (accepted and dialed); beyond, new ones are reset and counted.
  size_t max_connections = 1024;
  // Distinct ports the forwarder (setForwarder) accepts on; beyond, SYNs are answered with RST.
  size_t max_forwarded_ports = 256;
};

struct Stats {
  uint64_t rx_packets = 0, tx_packets = 0;
  uint64_t rx_invalid = 0;  // not an IP packet the stack could take
  uint64_t tcp_accepted = 0, tcp_dialed = 0;
  uint64_t tcp_refused = 0;  // over max_connections
  uint64_t tcp_errors = 0;   // connections ended by a reset or an abort
  uint64_t forwarded_ports_refused = 0;
  uint64_t tcp_refused_by_gate = 0;  // SYNs answered with a reset for the forwarder's gate
  size_t connections = 0;            // open now
  size_t forwarded_ports = 0;        // ports with an on-demand listener now
  size_t buffered_rx_bytes = 0;      // received, not yet read by the application (≤ window each)
};

struct ConnectionInfo {
  std::string remote;  // "ip:port" / "[ip6]:port" of the peer inside the overlay
  std::string local;   // our address and port
  uint16_t local_port = 0;
};

class Netstack {
 public:
  using Output = std::function<void(std::span<const uint8_t> ip_packet)>;
  using Accept = std::function<void(net::ByteStreamPtr stream, const ConnectionInfo& info)>;
  using Dialed = std::function<void(Result<net::ByteStreamPtr> stream)>;
  // Decides (later, on any thread of the loop) whether a new connection to a forwarded port is
  // accepted; `info.local` is empty at that point.
  using Gate = std::function<void(const ConnectionInfo& info, std::function<void(bool)> admit)>;

  static Result<std::unique_ptr<Netstack>> create(asio::io_context& io, Options options,
                                                  Output output);
  ~Netstack();
  Netstack(const Netstack&) = delete;
  Netstack& operator=(const Netstack&) = delete;

  // An IP packet for the stack (copied; invalid or foreign packets are dropped and counted).
  void input(std::span<const uint8_t> ip_packet);

  // Accepts TCP connections to `port` on every address of the stack.
  Status listen(uint16_t port, Accept on_accept);
  void unlisten(uint16_t port);
  // Accepts TCP connections to any other port (a listener is created on demand, when the
  // first SYN for the port arrives; at most max_forwarded_ports of them). With a `gate`, each
  // new connection's SYN is held until the gate decides: admitted, the handshake proceeds;
  // refused, the peer gets a reset to its SYN ("connection refused"). At most 256 SYNs wait.
  void setForwarder(Accept on_accept, Gate gate = nullptr);

  // Opens a TCP connection from the stack to address:port (an overlay address of a peer).
  void dial(const std::string& address, uint16_t port, Dialed done);

  const Stats& stats() const;

  class Impl;

 private:
  Netstack() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::netstack
