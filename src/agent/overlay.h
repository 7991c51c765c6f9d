#pragma once
// The agent on the overlay: the overlay engine (src/overlay: WireGuard on a UDP socket, the
// userspace TCP/IP stack on the overlay addresses the manifest assigns, the relay path) with
// the agent's services on it. TCP to ports 1 and 22 (SSH), 2 (reconnecting PTY), 3 (speed
// test) and 4 (HTTP API) goes to the agent's services; every other port is forwarded to the
// workspace's loopback. All on the loop.
//
// Peers come from coordination through the control server (a routine per control connection,
// makeCoordinator) and from WireGuard's configuration protocol on `config_socket` (the `wg`
// tool works on it: `wg show`, `wg set`), for static setups and tests.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/net/stream.h"
#include "wsa/overlay/discovery.h"

namespace wsa::overlay {
class Engine;
class Coordinator;
}  // namespace wsa::overlay
namespace wsa::metrics {
class Families;
}

namespace wsa::agent::v1 {
class Stats;
}

namespace wsa::agent {
class AgentApi;
class Routine;
}  // namespace wsa::agent

namespace asio {
class io_context;
}

namespace wsa::agent {

struct OverlayOptions {
  bool enabled = true;
  uint16_t udp_port = 0;      // 0: any
  std::string config_socket;  // WireGuard UAPI socket path; "" for none
  // UDP endpoints published to peers ("host" or "host:port"; the port defaults to the overlay's
  // UDP port). Empty: the addresses of this machine's interfaces, loopback and link-local left
  // out.
  std::vector<std::string> endpoints;
  // Direct paths (the manifest's disable_direct_connections turns them off): probes answered,
  // endpoints published. Off: every peer through the relay, and not one probe sent.
  bool direct = true;
  // The control server's host (the STUN servers of a relay map without stun_host are there).
  std::string control_host;
  // STUN servers for endpoint discovery (from the manifest's relay map); none: no discovery.
  std::vector<overlay::StunTarget> stun_targets;
  // The heartbeat of an idle direct path (keeps NAT mappings open): --overlay-keepalive.
  Duration keepalive = std::chrono::seconds(20);
};

// The agent's own services on the overlay.
constexpr uint16_t kOverlaySshPorts[] = {1, 22};
constexpr uint16_t kOverlayPtyPort = 2;
constexpr uint16_t kOverlaySpeedtestPort = 3;
constexpr uint16_t kOverlayApiPort = 4;

class Overlay {
 public:
  // A TCP connection for `port` with the peer's overlay "ip:port".
  using Serve = std::function<void(uint16_t port, net::ByteStreamPtr stream, std::string peer)>;

  // `addresses`: CIDR or plain ("100.64.0.5/32", "fd7a:115c:a1e0::5/128").
  static Result<std::unique_ptr<Overlay>> start(asio::io_context& io, Clock& clock,
                                                const std::vector<std::string>& addresses,
                                                const OverlayOptions& options, Serve serve);
  ~Overlay();

  overlay::Engine& engine() { return *engine_; }
  // The overlay's collector (the engine's: wsa_wg_*, wsa_overlay_*) for the agent's /metrics.
  void collectMetrics(metrics::Families& out) const;
  // Forwards a connection to the workspace's loopback (ports without an agent service).
  void forwardToLoopback(net::ByteStreamPtr stream, uint16_t port);
  // For one control connection: publishes our node (id, key, addresses, endpoints) through
  // Coordinate, applies the peers the server sends to the device and keeps the relay stream
  // open (overlay::Coordinator). A kRemain routine; the stream ending is an error (the
  // connection reconnects).
  std::shared_ptr<Routine> makeCoordinator(AgentApi& api, const std::string& agent_id);
  // /debug/overlay: our key, port, candidates and relay; each peer with its endpoint, path,
  // candidates, last handshake and bytes (JSON).
  std::string debugState() const;
  // The Stats report's network figures: bytes and packets each way (all peers), peers with a
  // session by path, the median latency of the direct paths (-1: none).
  void fillStats(v1::Stats* stats) const;

 private:
  Overlay() = default;
  std::unique_ptr<overlay::Engine> engine_;
  std::unique_ptr<overlay::Coordinator> coordinator_;
  // The coordination routine may outlive the overlay (the agent's last loop turns).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace wsa::agent
