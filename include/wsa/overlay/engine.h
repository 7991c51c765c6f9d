#pragma once
// The overlay engine: one WireGuard device (src/wg) with everything around it — the UDP bind,
// the relay path through the control server, the packet interface (the userspace TCP/IP stack
// or a TUN interface), the forwarder gate that sends ports without a listener to this machine's
// loopback, and WireGuard's configuration socket (with its listen-port rebind) — assembled once,
// for the agent, `wsa` and `wsa-wg` alike, and torn down in the order that matters.
//
// Teardown: shutdown() (or the destructor) closes the configuration socket, then destroys the
// userspace stack (its open connections end with a reset, sent through the device, which still
// exists), then the forwarder; the device, the UDP bind and the TUN go last, with the engine.
// An owner that runs the loop itself calls drainCompletions() after shutdown() and before
// destroying the engine and the loop, so that the completions the teardown caused run while
// everything they touch still exists. The agent destroys the engine inside a loop handler; its
// main loop drains afterwards.
//
// Everything, including the destructor, runs on the loop thread.

#include <prometheus/metric_family.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/control/relay_stream.h"
#include "wsa/net/stream.h"
#include "wsa/netstack/netstack.h"
#include "wsa/overlay/peer_paths.h"
#include "wsa/wg/device.h"

namespace asio {
class io_context;
}

namespace wsa::wg {
class UdpBind;
class Tun;
}  // namespace wsa::wg
namespace wsa::metrics {
class Families;
}

namespace wsa::netstack {
class LocalForwarder;
class UdpForwarder;
}  // namespace wsa::netstack

namespace wsa::overlay {

struct EngineOptions {
  // Overlay addresses, CIDR or plain ("100.64.0.5/32", "fd7a:115c:a1e0::5"); plain ones get
  // /32 or /128. The userspace stack answers on them (at least one is needed there).
  std::vector<std::string> addresses;
  // Where decrypted packets go: the userspace TCP/IP stack (no privileges), or a TUN interface
  // (the kernel's stack; `tun_name`).
  enum class Packets { kUserspace, kTun } packets = Packets::kUserspace;
  std::string tun_name;
  // The TUN interface failed (deleted, say); the engine is unusable from then on.
  std::function<void(const std::string& error)> on_tun_error;
  size_t mtu = 1420;      // the device's, the stack's and the TUN's
  uint16_t udp_port = 0;  // 0: any
  // Userspace stack: TCP to ports without a listener goes to this machine's loopback, gated: a
  // port nothing listens on locally is refused to the peer (a reset to its SYN). UDP to ports
  // without a socket of the engine's goes there too, one loopback socket per flow (bounded:
  // at most 1024 flows, least recently used evicted; idle flows closed after 60 s).
  bool forward_to_loopback = false;
  // WireGuard's configuration protocol (`wg show`, `wg set`) on this unix socket; "" for none.
  // `wg set listen-port` rebinds the UDP socket.
  std::string config_socket;
  // The metrics' `interface` label and the prefix of the engine's log lines ("overlay", "wg0").
  std::string name = "overlay";
  // The logger (logging::get) the engine logs to.
  std::string logger = "overlay";
  // The path probes' timers (peer_paths.h).
  PathTiming path_timing;
};

// Which part of the engine could not be started (for callers whose messages and exit codes
// depend on it).
enum class EnginePart { kNone, kUdp, kPackets, kConfigSocket };

class Engine {
 public:
  using Accept = netstack::Netstack::Accept;  // (stream, {remote "ip:port", local, local_port})
  using Dialed = netstack::Netstack::Dialed;

  // Generates a private key, creates the stack (or opens the TUN), binds UDP and serves the
  // configuration socket. On failure the error is that part's own message, and `failed` (when
  // given) says which part it was.
  static Result<std::unique_ptr<Engine>> start(asio::io_context& io, Clock& clock,
                                               EngineOptions options, EnginePart* failed = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  wg::Device& device();
  const wg::Device& device() const;
  const wg::PublicKey& publicKey() const;
  std::string publicKeyBase64() const;
  uint16_t udpPort() const;  // the current bind's (it changes with `wg set listen-port`)
  const std::vector<std::string>& addresses() const;  // without prefix
  const std::vector<std::string>& cidrs() const;      // with prefix
  const EngineOptions& options() const;

  // --- the userspace stack (errors, or refused dials, with a TUN) ---
  // Accepts overlay TCP connections to `port` (the agent's own services).
  Status listen(uint16_t port, Accept on_accept);
  // Opens a TCP connection through the overlay to a peer's overlay address.
  void dial(const std::string& address, uint16_t port, Dialed done);
  // Joins a connection to this machine's loopback `port` (an accepted stream the owner does not
  // serve itself).
  void forwardToLoopback(net::ByteStreamPtr stream, uint16_t port);
  // UDP: a flow to a peer's overlay address and port (datagrams from there go to
  // `on_datagram`); datagrams to our `port` (a service of the owner's; replies with sendUdp).
  Result<std::unique_ptr<netstack::UdpFlow>> openUdp(const std::string& address, uint16_t port,
                                                     netstack::UdpFlow::OnDatagram on_datagram);
  Status listenUdp(uint16_t port, netstack::Netstack::UdpReceive on_datagram);
  Status sendUdp(const netstack::UdpInfo& flow, std::span<const uint8_t> payload);

  // --- the relay path: datagrams for stand-in endpoints (127.3.3.40:N) go to the relay stream
  // in this slot (none: they are dropped and counted as no_stream) ---
  // Replaces the stream; a stream taken out adds its counts to the totals of ended streams.
  void setRelayStream(std::shared_ptr<control::RelayStream> stream);
  const std::shared_ptr<control::RelayStream>& relayStream() const;
  bool relayReady() const;
  // Hands relayed datagrams to the device, each from its sender's stand-in.
  void deliverRelayed(control::RelayStream::Packets packets);
  // The stand-in endpoint for a peer reached through the relay.
  wg::Endpoint relayEndpointFor(const wg::PublicKey& key);
  // The relay stream was (re)acknowledged: our unanswered initiations to peers on the relay
  // are sent again (one sent before may have found no stream).
  void relayConnected();

  // --- paths: probes between peers that answer them (peer_paths.h); probe datagrams from the
  // UDP socket and the relay go there, never to the device ---
  PeerPaths& paths();
  const PeerPaths& paths() const;
  // STUN: a datagram from the WireGuard socket (so the mapping learned is the one peers see),
  // and where Binding success responses arriving on it go (true: consumed).
  void sendUdp(const wg::Endpoint& to, std::span<const uint8_t> datagram);
  void setStunReceiver(std::function<bool(const wg::Endpoint&, std::span<const uint8_t>)> receiver);

  // --- metrics: collectors, read at scrape time ---
  // wsa_wg_*{interface=<name>}: the device, the UDP bind and the TUN (wsa-wg's set).
  void collectWgMetrics(metrics::Families& out) const;
  // wsa_wg_* and wsa_overlay_* (the stack, the forwarder, the relay): the agent's set.
  void collectMetrics(metrics::Families& out) const;
  // The same families on their own (tests).
  std::vector<prometheus::MetricFamily> collectWgMetrics() const;
  std::vector<prometheus::MetricFamily> collectMetrics() const;
  // For final reports: null where the engine has no such part.
  const wg::UdpBind* udp() const;
  const wg::Tun* tun() const;
  const netstack::Netstack* stack() const;
  const netstack::LocalForwarder* forwarder() const;
  const netstack::UdpForwarder* udpForwarder() const;

  // Begins the teardown: closes the configuration socket, destroys the stack (final resets go
  // out through the device) and the forwarder. Idempotent; the destructor calls it. The device,
  // the UDP bind and the relay slot stay until the engine is destroyed.
  void shutdown();
  // For owners that run the loop: runs the completions already queued (those the teardown
  // caused), up to a bound. Call after io.run() returned and shutdown(), before destroying the
  // engine or the loop. Never from inside a handler of that loop.
  static void drainCompletions(asio::io_context& io);

  class Impl;

 private:
  Engine() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::overlay
