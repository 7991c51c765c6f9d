#include "agent/overlay.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "agent/api.h"
#include "agent/supervisor.h"
#include "wsa/agent/v1/stats.pb.h"
#include "wsa/common/logging.h"
#include "wsa/common/metrics.h"
#include "wsa/overlay/coordinator.h"
#include "wsa/overlay/engine.h"
#include "wsa/wg/relay_endpoints.h"

namespace wsa::agent {

namespace {

// The Coordinator's sessions as a supervised routine: one session per control connection.
class CoordinateRoutine final : public BasicRoutine {
 public:
  CoordinateRoutine(overlay::Coordinator& coordinator, std::weak_ptr<bool> overlay_alive,
                    AgentApi& api, std::string id)
      : coordinator_(coordinator),
        overlay_alive_(std::move(overlay_alive)),
        api_(api),
        id_(std::move(id)) {}

 protected:
  void onStart() override {
    std::weak_ptr<CoordinateRoutine> weak =
        std::static_pointer_cast<CoordinateRoutine>(shared_from_this());
    overlay::CoordinatorTransport transport;
    transport.coordinate = [api = &api_](control::CoordinateStream::Callbacks cb) {
      return api->coordinate(std::move(cb));
    };
    transport.relay = [api = &api_](const control::RelayStream::Key& key,
                                    control::RelayStream::Callbacks cb) {
      return api->relay(key, std::move(cb));
    };
    session_ = coordinator_.start(id_, std::move(transport), [weak](int code, std::string message) {
      if (auto self = weak.lock()) self->onDone(RpcStatus{code, std::move(message)});
    });
    if (session_ == 0) return;  // an API without coordination: idle until stopped
    beginCall();
  }
  void onStop() override {
    if (overlayAlive()) coordinator_.stop(session_);
  }
  void onFinish() override {
    if (overlayAlive()) coordinator_.stop(session_);
  }

 private:
  // The stream's end may be delivered after the overlay is gone (the agent's last loop turns).
  bool overlayAlive() const {
    auto a = overlay_alive_.lock();
    return a && *a;
  }
  void onDone(const RpcStatus& st) {
    if (!endCall()) return;
    if (stopping()) {
      finish(Status::success());
    } else {
      finish(makeError("coordinate: " + st.text()));
    }
  }

  overlay::Coordinator& coordinator_;
  std::weak_ptr<bool> overlay_alive_;
  AgentApi& api_;
  std::string id_;
  uint64_t session_ = 0;
};

}  // namespace

Result<std::unique_ptr<Overlay>> Overlay::start(asio::io_context& io, Clock& clock,
                                                const std::vector<std::string>& addresses,
                                                const OverlayOptions& options, Serve serve) {
  if (addresses.empty()) return makeError("the manifest assigns no overlay address");
  overlay::EngineOptions eo;
  eo.addresses = addresses;
  eo.udp_port = options.udp_port;
  eo.forward_to_loopback = true;
  eo.path_timing.heartbeat_idle = options.keepalive;
  eo.config_socket = options.config_socket;
  overlay::EnginePart failed = overlay::EnginePart::kNone;
  auto engine = overlay::Engine::start(io, clock, std::move(eo), &failed);
  if (!engine) {
    switch (failed) {
      case overlay::EnginePart::kUdp:
        return makeError("overlay UDP socket: " + engine.error());
      case overlay::EnginePart::kConfigSocket:
        return makeError("--overlay-config-socket: " + engine.error());
      default:
        return makeError("overlay network stack: " + engine.error());
    }
  }
  std::unique_ptr<Overlay> o(new Overlay());
  o->engine_ = std::move(*engine);
  overlay::Engine& e = *o->engine_;
  auto own = [serve](uint16_t port) {
    return [serve, port](net::ByteStreamPtr s, const netstack::ConnectionInfo& info) {
      serve(port, std::move(s), info.remote);
    };
  };
  for (uint16_t port : kOverlaySshPorts) {
    if (auto st = e.listen(port, own(port)); !st) return makeError(st.error());
  }
  for (uint16_t port : {kOverlayPtyPort, kOverlaySpeedtestPort, kOverlayApiPort}) {
    if (auto st = e.listen(port, own(port)); !st) return makeError(st.error());
  }

  overlay::CoordinatorOptions co;
  co.publish_endpoints = options.direct;
  co.probes = options.direct;
  co.endpoints = options.endpoints;
  e.paths().setPolicy({.direct = options.direct, .relay = true});
  co.answer_ready_for_handshake = true;  // clients wait for it
  co.remove_departed_peers = true;
  co.relay.open = overlay::CoordinatorOptions::Relay::Open::kWithSession;
  co.relay.reopen = true;
  o->coordinator_ = std::make_unique<overlay::Coordinator>(e, clock, std::move(co));
  // STUN from the overlay's own socket: the reflexive endpoints peers can punch through to.
  if (options.direct && !options.stun_targets.empty()) {
    o->coordinator_->setStunTargets(options.stun_targets);
  }

  std::string joined;
  for (const auto& a : e.addresses()) joined += (joined.empty() ? "" : ", ") + a;
  logging::get("overlay")->info(
      "overlay up: addresses {}, UDP port {}, public key {}{}{}", joined, e.udpPort(),
      e.publicKeyBase64(), options.direct ? "" : ", direct connections disabled (relay only)",
      options.config_socket.empty() ? "" : ", configuration socket " + options.config_socket);
  return o;
}

Overlay::~Overlay() {
  *alive_ = false;
  coordinator_.reset();  // stops the relay stream and the coordination session
  engine_.reset();       // the overlay's connections end; then the device
}

std::string Overlay::debugState() const {
  using nlohmann::json;
  const overlay::Engine& e = *engine_;
  json j;
  j["public_key"] = e.publicKeyBase64();
  j["udp_port"] = e.udpPort();
  j["addresses"] = e.addresses();
  j["relay_connected"] = e.relayReady();
  auto policy = e.paths().policy();
  j["direct_connections"] = policy.direct;
  json own = json::array();
  for (const auto& [ep, kind] : coordinator_->ownCandidates()) {
    static const char* kinds[] = {"unspecified", "local", "reflexive", "configured"};
    own.push_back({{"endpoint", ep.toString()}, {"kind", kinds[kind >= 0 && kind < 4 ? kind : 0]}});
  }
  j["candidates"] = own;
  json peers = json::array();
  auto now = std::chrono::system_clock::now();
  for (const auto& st : e.device().peers()) {
    json p;
    p["public_key"] = wg::toBase64(st.public_key);
    p["endpoint"] = wg::RelayEndpoints::isRelay(st.endpoint) ? "relay" : st.endpoint.toString();
    p["has_session"] = st.has_session;
    p["last_handshake_seconds_ago"] =
        st.last_handshake ? json(std::chrono::duration<double>(now - *st.last_handshake).count())
                          : json(nullptr);
    p["rx_bytes"] = st.rx_bytes;
    p["tx_bytes"] = st.tx_bytes;
    if (auto v = e.paths().peer(st.public_key)) {
      p["path"] = overlay::pathName(v->path);
      p["direct_endpoint"] =
          v->path == overlay::Path::kDirect ? json(v->endpoint.toString()) : json(nullptr);
      p["latency_ms"] = v->latency_ms ? json(*v->latency_ms) : json(nullptr);
      p["active"] = v->active;
      json cands = json::array();
      for (const auto& c : v->candidates) {
        cands.push_back({{"endpoint", c.endpoint.toString()},
                         {"published", c.published},
                         {"latency_ms", c.latency_ms ? json(*c.latency_ms) : json(nullptr)},
                         {"seconds_since_pong",
                          c.since_pong ? json(std::chrono::duration<double>(*c.since_pong).count())
                                       : json(nullptr)}});
      }
      p["candidates"] = cands;
    } else {
      p["path"] = "static";  // a peer that does not answer probes: its endpoint roams
    }
    peers.push_back(p);
  }
  j["peers"] = peers;
  const auto& ps = e.paths().stats();
  j["probes"] = {{"pings_sent", ps.pings_sent},
                 {"pings_received", ps.pings_received},
                 {"pongs_sent", ps.pongs_sent},
                 {"pongs_received", ps.pongs_received},
                 {"call_me_maybe_sent", ps.call_me_maybe_sent},
                 {"call_me_maybe_received", ps.call_me_maybe_received},
                 {"path_changes", ps.path_changes}};
  return j.dump(2) + "\n";
}

void Overlay::fillStats(v1::Stats* st) const {
  const overlay::Engine& e = *engine_;
  int64_t rx_bytes = 0, tx_bytes = 0, rx_packets = 0, tx_packets = 0;
  int64_t direct = 0, relayed = 0;
  std::vector<double> latencies;
  for (const auto& p : e.device().peers()) {
    rx_bytes += static_cast<int64_t>(p.rx_bytes);
    tx_bytes += static_cast<int64_t>(p.tx_bytes);
    rx_packets += static_cast<int64_t>(p.rx_packets);
    tx_packets += static_cast<int64_t>(p.tx_packets);
    if (!p.has_session) continue;
    auto v = e.paths().peer(p.public_key);
    bool is_direct =
        v ? v->path == overlay::Path::kDirect : !wg::RelayEndpoints::isRelay(p.endpoint);
    ++(is_direct ? direct : relayed);
    if (v && v->latency_ms) latencies.push_back(*v->latency_ms);
  }
  st->set_rx_bytes(rx_bytes);
  st->set_tx_bytes(tx_bytes);
  st->set_rx_packets(rx_packets);
  st->set_tx_packets(tx_packets);
  if (direct > 0) (*st->mutable_connections_by_path())["direct"] = direct;
  if (relayed > 0) (*st->mutable_connections_by_path())["relay"] = relayed;
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    size_t n = latencies.size();
    st->set_connection_median_latency_ms(
        n % 2 == 1 ? latencies[n / 2] : (latencies[n / 2 - 1] + latencies[n / 2]) / 2);
  }
}

void Overlay::forwardToLoopback(net::ByteStreamPtr stream, uint16_t port) {
  engine_->forwardToLoopback(std::move(stream), port);
}

void Overlay::collectMetrics(metrics::Families& out) const {
  engine_->collectMetrics(out);
  if (const auto* ds = coordinator_->discoveryStats()) {
    out.counter("wsa_overlay_stun_requests_total", "STUN Binding requests sent (discovery)",
                ds->requests);
    out.counter("wsa_overlay_stun_responses_total", "STUN Binding responses taken", ds->responses);
    out.counter("wsa_overlay_stun_timeouts_total", "STUN servers silent for a whole round",
                ds->timeouts);
    out.counter("wsa_overlay_stun_unmatched_total",
                "STUN responses for no outstanding request (late or forged)", ds->unmatched);
  }
  if (const auto* r = coordinator_->discoveryReport(); r != nullptr && r->complete) {
    out.gauge("wsa_overlay_stun_mapping_varies",
              "1 when the NAT's mapping varies by destination, 0 when not, -1 unknown",
              r->varies == overlay::MappingVaries::kYes  ? 1
              : r->varies == overlay::MappingVaries::kNo ? 0
                                                         : -1);
    auto lat = out.gauges("wsa_overlay_relay_region_latency_seconds",
                          "STUN round trip to each relay region");
    for (const auto& [region, ms] : r->latency_ms) {
      lat.add(ms / 1000.0, {{"region", std::to_string(region)}});
    }
  }
}

std::shared_ptr<Routine> Overlay::makeCoordinator(AgentApi& api, const std::string& agent_id) {
  return std::make_shared<CoordinateRoutine>(*coordinator_, alive_, api, agent_id);
}

}  // namespace wsa::agent
