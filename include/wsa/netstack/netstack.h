#pragma once
// The overlay's userspace TCP/IP stack: lwIP (compiled with our options, NO_SYS) on the Asio
// loop. IP packets come in through input() (from the WireGuard device) and go out through the
// Output callback (to the device); TCP connections surface as net::ByteStream, so the agent's
// servers (SSH, PTY, speed test, HTTP API) serve overlay connections exactly like kernel ones.
//
// lwIP keeps global state, so there is one Netstack per process; create() refuses a second.
// Everything, including the destructor, runs on the loop thread. The stack answers ICMP echo
// (ping) on its addresses itself. UDP: sockets on the stack's own ports (listenUdp), every other
// port to a forwarder (setUdpForwarder, the agent's loopback forwarder), and flows from the stack
// to a peer (openUdp, the client's).

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
  // Distinct ports the UDP forwarder (setUdpForwarder) takes datagrams on at once; beyond,
  // datagrams to further ports are dropped and counted until the forwarder releases one.
  size_t max_forwarded_udp_ports = 1024;
  // UDP flows from the stack (openUdp) at once; beyond, openUdp fails.
  size_t max_udp_flows = 4096;
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
  uint64_t udp_rx_datagrams = 0, udp_tx_datagrams = 0;  // to and from our UDP sockets
  uint64_t udp_port_refused = 0;   // datagrams to a new port over max_forwarded_udp_ports
  uint64_t udp_send_errors = 0;    // datagrams lwIP refused to send (too large, no route)
  uint64_t udp_flows_refused = 0;  // openUdp over max_udp_flows
  size_t udp_forwarded_ports = 0;  // ports the UDP forwarder has a socket on now
  size_t udp_flows = 0;            // openUdp flows open now
};

// One UDP datagram's addresses, as the stack saw it arrive: the peer (remote) and which of our
// addresses and ports it was sent to (local). Replies go back with Netstack::sendUdp.
struct UdpInfo {
  std::string remote_address;  // "100.64.0.9", "fd7a:115c:a1e0::9"
  uint16_t remote_port = 0;
  std::string local_address;
  uint16_t local_port = 0;
  bool v6 = false;
  std::string remote() const;  // "ip:port" / "[ip6]:port"
};

// A UDP flow from the stack to one peer address and port (an ephemeral local port, datagrams
// from anyone else are not delivered). Closed on destruction; it may outlive the stack (then
// send fails).
class UdpFlow {
 public:
  using OnDatagram = std::function<void(std::span<const uint8_t> payload)>;
  ~UdpFlow();
  UdpFlow(const UdpFlow&) = delete;
  UdpFlow& operator=(const UdpFlow&) = delete;
  // Sends one datagram (at most 65,507 bytes over IPv4; larger than the MTU is fragmented).
  Status send(std::span<const uint8_t> payload);
  uint16_t localPort() const;

  struct State;  // the stack's
  explicit UdpFlow(std::shared_ptr<State> s) : s_(std::move(s)) {}

 private:
  std::shared_ptr<State> s_;
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

  // --- UDP. Datagrams are handed over synchronously, from inside input(); the payload is valid
  // for the call only. ---
  using UdpReceive = std::function<void(const UdpInfo& info, std::span<const uint8_t> payload)>;
  // Takes datagrams to `port` on every address of the stack (a service of our own).
  Status listenUdp(uint16_t port, UdpReceive on_datagram);
  void unlistenUdp(uint16_t port);
  // Takes datagrams to every other port: a socket for the port is opened when its first
  // datagram arrives (at most max_forwarded_udp_ports) and kept until releaseUdpPort(port).
  // Without a forwarder, a datagram to a port without a socket gets ICMP port unreachable.
  void setUdpForwarder(UdpReceive on_datagram);
  void releaseUdpPort(uint16_t port);
  // Sends a datagram back along `flow`: from its local address and port to its remote one (the
  // port must have a socket: a listener's or the forwarder's).
  Status sendUdp(const UdpInfo& flow, std::span<const uint8_t> payload);
  // A UDP flow to address:port (a peer's overlay address).
  Result<std::unique_ptr<UdpFlow>> openUdp(const std::string& address, uint16_t port,
                                           UdpFlow::OnDatagram on_datagram);

  const Stats& stats() const;

  class Impl;

 private:
  Netstack() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::netstack
