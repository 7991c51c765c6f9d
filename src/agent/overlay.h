#pragma once
// The agent on the overlay: the WireGuard engine (src/wg) on a UDP socket, with the userspace
// TCP/IP stack (src/netstack) on the overlay addresses the manifest assigns. TCP to ports 1
// and 22 (SSH), 2 (reconnecting PTY), 3 (speed test) and 4 (HTTP API) goes to the agent's
// services; every other port is forwarded to the workspace's loopback. All on the loop.
//
// Peers come from WireGuard's configuration protocol on `config_socket` (the `wg` tool works
// on it: `wg show`, `wg set`), for static setups and tests; coordination through the control
// server will feed the same device.

#include <prometheus/metric_family.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/net/stream.h"

namespace wsa::overlay::v1 {
class Node;
class CoordinateResponse_PeerUpdate;
}  // namespace wsa::overlay::v1

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

  const std::vector<std::string>& addresses() const;
  std::string publicKey() const;  // base64
  uint16_t udpPort() const;
  // Prometheus families (wsa_wg_*, wsa_overlay_*) for the agent's /metrics.
  std::vector<prometheus::MetricFamily> collectMetrics() const;
  // Forwards a connection to the workspace's loopback (ports without an agent service).
  void forwardToLoopback(net::ByteStreamPtr stream, uint16_t port);
  // The UDP endpoints published to peers.
  std::vector<std::string> endpoints() const;
  // For one control connection: publishes our node (id, key, addresses, endpoints) through
  // Coordinate and applies the peers the server sends (added, changed, removed) to the device.
  // A kRemain routine; the stream ending is an error (the connection reconnects).
  std::shared_ptr<Routine> makeCoordinator(AgentApi& api, const std::string& agent_id);
  // The relay stream through the control server, for one connection's coordination: opened
  // (and reopened with backoff) from startRelay until stopRelay with the same API.
  void startRelay(AgentApi& api);
  void stopRelay(AgentApi& api);
  // Coordination helpers (used by the coordinator routine).
  void describeSelf(const std::string& id, overlay::v1::Node* node) const;
  // Returns true when the update added a peer or changed its key: the peer may handshake now
  // (the coordinator tells it with ready_for_handshake).
  bool applyPeerUpdate(const overlay::v1::CoordinateResponse_PeerUpdate& update);

  class Impl;

 private:
  Overlay() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::agent
