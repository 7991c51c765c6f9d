#include "agent/overlay.h"

#include "agent/api.h"
#include "agent/supervisor.h"
#include "wsa/common/logging.h"
#include "wsa/overlay/coordinator.h"
#include "wsa/overlay/engine.h"

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

void Overlay::forwardToLoopback(net::ByteStreamPtr stream, uint16_t port) {
  engine_->forwardToLoopback(std::move(stream), port);
}

void Overlay::collectMetrics(metrics::Families& out) const {
  engine_->collectMetrics(out);
}

std::shared_ptr<Routine> Overlay::makeCoordinator(AgentApi& api, const std::string& agent_id) {
  return std::make_shared<CoordinateRoutine>(*coordinator_, alive_, api, agent_id);
}

}  // namespace wsa::agent
