#include "agent/overlay.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <asio/io_context.hpp>
#include <cstring>
#include <map>

#include "agent/api.h"
#include "agent/supervisor.h"
#include "wsa/common/logging.h"
#include "wsa/net/address.h"
#include "wsa/netstack/forward.h"
#include "wsa/netstack/netstack.h"
#include "wsa/overlay/v1/coordinate.pb.h"
#include "wsa/wg/device.h"
#include "wsa/wg/metrics.h"
#include "wsa/wg/node.h"
#include "wsa/wg/relay_path.h"
#include "wsa/wg/uapi.h"
#include "wsa/wg/udp.h"

namespace wsa::agent {

class Overlay::Impl {
 public:
  Impl(asio::io_context& io, Clock& clock)
      : io_(io),
        clock_(clock),
        device_(clock, wg::DeviceOptions{},
                wg::Device::Io{
                    .send =
                        [this](const wg::Endpoint& to, std::span<const uint8_t> d) {
                          if (!relay_.send(to, d) && udp_) udp_->send(to, d);
                        },
                    .deliver =
                        [this](std::span<const uint8_t> p) {
                          if (stack_) stack_->input(p);
                        },
                }),
        forwarder_(io, netstack::LocalForwarder::Options{}),
        log_(logging::get("overlay")) {}

  // --- relay (Overlay.Relay through the control server) ---
  void startRelay(AgentApi& api);
  void openRelay();
  void stopRelay();
  void dropRelay();  // forgets the stream, keeping its counts
  control::RelayStreamStats relayStats() const {
    control::RelayStreamStats s = relay_totals_;
    if (relay_.stream()) s += relay_.stream()->stats();
    return s;
  }

  asio::io_context& io_;
  Clock& clock_;
  wg::Device device_;
  std::unique_ptr<wg::UdpBind> udp_;
  std::unique_ptr<netstack::Netstack> stack_;
  netstack::LocalForwarder forwarder_;
  std::unique_ptr<wg::UapiServer> uapi_;
  std::vector<std::string> addresses_;
  std::vector<std::string> cidrs_;  // as the manifest gave them
  OverlayOptions options_;
  std::map<std::string, wg::PublicKey> peers_;  // coordinated peers by id
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<spdlog::logger> log_;
  wg::RelayPath relay_;
  AgentApi* relay_api_ = nullptr;  // the connection's API while coordinating
  uint64_t relay_gen_ = 0;
  std::unique_ptr<Timer> relay_timer_;
  Duration relay_backoff_{};
  bool relay_warned_ = false;
  control::RelayStreamStats relay_totals_;  // of the streams that ended
  uint64_t relay_streams_ = 0;
};

// The relay stream lives as long as the control connection's coordination. It is opened again
// (with backoff) when it ends: the server may not have our node yet (the hello names a key
// published through Coordinate, a different stream), or the server restarted.
void Overlay::Impl::startRelay(AgentApi& api) {
  relay_api_ = &api;
  relay_backoff_ = std::chrono::milliseconds(250);
  if (!relay_timer_) relay_timer_ = clock_.createTimer();
  openRelay();
}

void Overlay::Impl::openRelay() {
  if (relay_api_ == nullptr) return;
  uint64_t gen = ++relay_gen_;
  std::weak_ptr<bool> alive = alive_;
  control::RelayStream::Callbacks cb;
  cb.on_ready = [this, alive, gen] {
    if (alive.expired() || gen != relay_gen_) return;
    relay_backoff_ = std::chrono::milliseconds(250);
    log_->info("relay: connected through the control server");
    relay_warned_ = false;
  };
  cb.on_packets = [this, alive, gen](control::RelayStream::Packets p) {
    if (alive.expired() || gen != relay_gen_) return;
    relay_.deliver(device_, std::move(p));
  };
  cb.on_done = [this, alive, gen](int code, std::string message) {
    if (alive.expired() || gen != relay_gen_) return;
    dropRelay();
    if (relay_api_ == nullptr) return;
    // The first attempt may come before the server has our node: only repeated failures are
    // worth a warning.
    if (relay_backoff_ >= std::chrono::seconds(2) && !relay_warned_) {
      log_->warn("relay: stream ended ({}: {}); retrying", code, message);
      relay_warned_ = true;
    } else {
      log_->debug("relay: stream ended ({}: {}); retrying in {} ms", code, message,
                  std::chrono::duration_cast<std::chrono::milliseconds>(relay_backoff_).count());
    }
    relay_timer_->schedule(relay_backoff_, [this, alive] {
      if (!alive.expired()) openRelay();
    });
    relay_backoff_ = std::min<Duration>(relay_backoff_ * 2, std::chrono::seconds(10));
  };
  ++relay_streams_;
  relay_.setStream(relay_api_->relay(device_.publicKey(), std::move(cb)));
}

void Overlay::Impl::stopRelay() {
  relay_api_ = nullptr;
  ++relay_gen_;
  if (relay_timer_) relay_timer_->cancel();
  if (relay_.stream()) relay_.stream()->cancel();
  dropRelay();
}

void Overlay::Impl::dropRelay() {
  if (relay_.stream()) {
    relay_totals_ += relay_.stream()->stats();
    relay_totals_.queued = 0;
    relay_.setStream(nullptr);
  }
}

Result<std::unique_ptr<Overlay>> Overlay::start(asio::io_context& io, Clock& clock,
                                                const std::vector<std::string>& addresses,
                                                const OverlayOptions& options, Serve serve) {
  std::unique_ptr<Overlay> o(new Overlay());
  o->impl_ = std::make_unique<Impl>(io, clock);
  Impl* impl = o->impl_.get();
  impl->options_ = options;
  for (const auto& a : addresses) {
    impl->addresses_.push_back(a.substr(0, a.find('/')));
    impl->cidrs_.push_back(a.find('/') == std::string::npos
                               ? a + (a.find(':') == std::string::npos ? "/32" : "/128")
                               : a);
  }
  if (impl->addresses_.empty()) return makeError("the manifest assigns no overlay address");

  impl->device_.setPrivateKey(wg::generatePrivateKey());
  auto on_datagram = [impl](const wg::Endpoint& from, std::span<uint8_t> d) {
    impl->device_.receive(from, d);
  };
  auto udp = wg::UdpBind::open(io, options.udp_port, on_datagram);
  if (!udp) return makeError("overlay UDP socket: " + udp.error());
  impl->udp_ = std::move(*udp);

  netstack::Options nopts;
  nopts.addresses = impl->addresses_;
  auto stack = netstack::Netstack::create(
      io, nopts, [impl](std::span<const uint8_t> p) { impl->device_.send(p); });
  if (!stack) return makeError("overlay network stack: " + stack.error());
  impl->stack_ = std::move(*stack);
  auto own = [serve](uint16_t port) {
    return [serve, port](net::ByteStreamPtr s, const netstack::ConnectionInfo& info) {
      serve(port, std::move(s), info.remote);
    };
  };
  for (uint16_t port : kOverlaySshPorts) {
    if (auto st = impl->stack_->listen(port, own(port)); !st) return makeError(st.error());
  }
  for (uint16_t port : {kOverlayPtyPort, kOverlaySpeedtestPort, kOverlayApiPort}) {
    if (auto st = impl->stack_->listen(port, own(port)); !st) return makeError(st.error());
  }
  // Every other port goes to the workspace's loopback; the gate connects there first, so a
  // closed port is refused to the overlay client.
  // (Accepts are handed over from the loop: one may arrive after the overlay is gone.)
  impl->stack_->setForwarder(
      [impl, alive = impl->alive_](net::ByteStreamPtr s, const netstack::ConnectionInfo& info) {
        if (!*alive) return;
        impl->forwarder_.forward(std::move(s), info.local_port, info.remote);
      },
      [impl, alive = impl->alive_](const netstack::ConnectionInfo& info,
                                   std::function<void(bool)> admit) {
        if (!*alive) return admit(false);
        impl->forwarder_.gate(info.local_port, info.remote, std::move(admit));
      });

  if (!options.config_socket.empty()) {
    wg::UapiHooks hooks;
    hooks.listen_port = [impl] { return impl->udp_ ? impl->udp_->port() : uint16_t{0}; };
    hooks.set_listen_port = [impl, on_datagram, &io](uint16_t port) -> Status {
      if (port == 0 || (impl->udp_ && impl->udp_->port() == port)) return {};
      auto nb = wg::UdpBind::open(io, port, on_datagram);
      if (!nb) return makeError(nb.error());
      impl->udp_ = std::move(*nb);
      return {};
    };
    auto uapi = wg::UapiServer::listen(io, options.config_socket, impl->device_, hooks);
    if (!uapi) return makeError("--overlay-config-socket: " + uapi.error());
    impl->uapi_ = std::move(*uapi);
  }
  std::string joined;
  for (const auto& a : impl->addresses_) joined += (joined.empty() ? "" : ", ") + a;
  impl->log_->info(
      "overlay up: addresses {}, UDP port {}, public key {}{}", joined, impl->udp_->port(),
      wg::toBase64(impl->device_.publicKey()),
      options.config_socket.empty() ? "" : ", configuration socket " + options.config_socket);
  return o;
}

Overlay::~Overlay() {
  if (!impl_) return;
  *impl_->alive_ = false;
  impl_->stopRelay();
}

void Overlay::startRelay(AgentApi& api) {
  impl_->startRelay(api);
}

void Overlay::stopRelay(AgentApi& api) {
  if (impl_->relay_api_ == &api) impl_->stopRelay();
}

const std::vector<std::string>& Overlay::addresses() const {
  return impl_->addresses_;
}
std::string Overlay::publicKey() const {
  return wg::toBase64(impl_->device_.publicKey());
}
uint16_t Overlay::udpPort() const {
  return impl_->udp_ ? impl_->udp_->port() : 0;
}

void Overlay::forwardToLoopback(net::ByteStreamPtr stream, uint16_t port) {
  impl_->forwarder_.forward(std::move(stream), port);
}

std::vector<prometheus::MetricFamily> Overlay::collectMetrics() const {
  wg::MetricsSources src{&impl_->device_, [this] { return impl_->udp_.get(); },
                         [] { return static_cast<const wg::Tun*>(nullptr); }};
  auto out = wg::collectMetrics(src, "overlay");
  auto add = [&out](const std::string& name, const std::string& help, prometheus::MetricType t,
                    double v) {
    prometheus::ClientMetric m;
    if (t == prometheus::MetricType::Counter) {
      m.counter.value = v;
    } else {
      m.gauge.value = v;
    }
    out.push_back(prometheus::MetricFamily{name, help, t, {m}});
  };
  const auto& ns = impl_->stack_->stats();
  const auto& fs = impl_->forwarder_.stats();
  using T = prometheus::MetricType;
  add("wsa_overlay_tcp_accepted_total", "Overlay TCP connections accepted", T::Counter,
      static_cast<double>(ns.tcp_accepted));
  add("wsa_overlay_tcp_refused_total", "Overlay TCP connections refused at the connection limit",
      T::Counter, static_cast<double>(ns.tcp_refused));
  add("wsa_overlay_tcp_connections", "Overlay TCP connections open", T::Gauge,
      static_cast<double>(ns.connections));
  add("wsa_overlay_tcp_buffered_bytes", "Received overlay TCP data not yet read", T::Gauge,
      static_cast<double>(ns.buffered_rx_bytes));
  add("wsa_overlay_packets_invalid_total", "Packets the network stack could not take", T::Counter,
      static_cast<double>(ns.rx_invalid));
  add("wsa_overlay_forwarded_connections_total", "Connections forwarded to the loopback",
      T::Counter, static_cast<double>(fs.connections));
  add("wsa_overlay_forward_refused_total", "Forwards refused: nothing listens on the loopback",
      T::Counter, static_cast<double>(fs.refused));
  add("wsa_overlay_forward_rejected_total", "Forwards rejected at the active limit", T::Counter,
      static_cast<double>(fs.rejected));
  auto rs = impl_->relayStats();
  add("wsa_overlay_relay_connected", "1 while the relay stream to the control server is up",
      T::Gauge, impl_->relay_.ready() ? 1 : 0);
  add("wsa_overlay_relay_streams_total", "Relay streams opened", T::Counter,
      static_cast<double>(impl_->relay_streams_));
  add("wsa_overlay_relay_packets_sent_total", "Datagrams sent through the relay", T::Counter,
      static_cast<double>(rs.packets_sent));
  add("wsa_overlay_relay_packets_received_total", "Datagrams received through the relay",
      T::Counter, static_cast<double>(rs.packets_received));
  add("wsa_overlay_relay_queued_packets", "Datagrams waiting for the relay stream", T::Gauge,
      static_cast<double>(rs.queued));
  add("wsa_overlay_relay_peers", "Peers with a relay stand-in endpoint", T::Gauge,
      static_cast<double>(impl_->relay_.endpoints().size()));
  add("wsa_overlay_relay_peers_reassigned_total",
      "Relay stand-in endpoints given to a new peer at the bound", T::Counter,
      static_cast<double>(impl_->relay_.endpoints().reassigned()));
  {
    prometheus::MetricFamily f{"wsa_overlay_relay_dropped_total",
                               "Datagrams for the relay dropped, by reason",
                               T::Counter,
                               {}};
    auto reason = [&f](const char* r, uint64_t v) {
      prometheus::ClientMetric m;
      m.label.push_back({"reason", r});
      m.counter.value = static_cast<double>(v);
      f.metric.push_back(m);
    };
    reason("queue_full", rs.dropped_queue_full);
    reason("not_ready", rs.dropped_not_ready);
    reason("no_stream", impl_->relay_.unroutable());
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace wsa::agent

// --- coordination ---------------------------------------------------------------------------

namespace wsa::agent {

namespace {

std::vector<std::string> interfaceEndpoints(uint16_t port) {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || (i->ifa_flags & IFF_LOOPBACK) != 0 ||
        (i->ifa_flags & IFF_UP) == 0) {
      continue;
    }
    char host[INET6_ADDRSTRLEN] = {0};
    if (i->ifa_addr->sa_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, host,
                  sizeof(host));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(a)) continue;
      ::inet_ntop(AF_INET6, a, host, sizeof(host));
    } else {
      continue;
    }
    out.push_back(net::joinHostPort(host, port));
  }
  ::freeifaddrs(list);
  return out;
}

class Coordinator final : public BasicRoutine {
 public:
  Coordinator(Overlay& overlay, std::weak_ptr<bool> overlay_alive, AgentApi& api, std::string id)
      : overlay_(overlay),
        overlay_alive_(std::move(overlay_alive)),
        api_(api),
        id_(std::move(id)) {}

 protected:
  void onStart() override {
    std::weak_ptr<Coordinator> weak = std::static_pointer_cast<Coordinator>(shared_from_this());
    stream_ = api_.coordinate(
        [weak](overlay::v1::CoordinateResponse r) {
          if (auto self = weak.lock()) self->onResponse(r);
        },
        [weak](const RpcStatus& st) {
          if (auto self = weak.lock()) self->onDone(st);
        });
    if (!stream_) return;  // an API without coordination: idle until stopped
    beginCall();
    overlay::v1::CoordinateRequest req;
    overlay_.describeSelf(id_, req.mutable_update_self()->mutable_node());
    stream_->send(req);
    overlay_.startRelay(api_);
  }
  void onStop() override {
    if (overlayAlive()) overlay_.stopRelay(api_);
    if (stream_) stream_->cancel();
  }
  void onFinish() override {
    if (overlayAlive()) overlay_.stopRelay(api_);
    stream_.reset();
  }

 private:
  // The stream's end may be delivered after the overlay is gone (the agent's last loop turns).
  bool overlayAlive() const {
    auto a = overlay_alive_.lock();
    return a && *a;
  }
  void onResponse(const overlay::v1::CoordinateResponse& r) {
    if (done() || !overlayAlive()) return;
    if (!r.error().empty()) logging::get("overlay")->warn("coordination: {}", r.error());
    overlay::v1::CoordinateRequest ready;
    for (const auto& u : r.peer_updates()) {
      if (overlay_.applyPeerUpdate(u)) ready.add_ready_for_handshake()->set_id(u.id());
    }
    // Tell the new peers (clients wait for it) that their first handshake will be answered.
    if (ready.ready_for_handshake_size() > 0 && stream_) stream_->send(ready);
  }
  void onDone(const RpcStatus& st) {
    if (!endCall()) return;
    if (stopping()) {
      finish(Status::success());
    } else {
      finish(makeError("coordinate: " + st.text()));
    }
  }

  Overlay& overlay_;
  std::weak_ptr<bool> overlay_alive_;
  AgentApi& api_;
  std::string id_;
  std::unique_ptr<CoordinateStream> stream_;
};

}  // namespace

std::vector<std::string> Overlay::endpoints() const {
  uint16_t port = udpPort();
  if (impl_->options_.endpoints.empty()) return interfaceEndpoints(port);
  std::vector<std::string> out;
  for (const auto& e : impl_->options_.endpoints) {
    if (auto p = wg::parseEndpoint(e)) {
      out.push_back(e);
    } else {
      out.push_back(net::joinHostPort(e, port));
    }
  }
  return out;
}

void Overlay::describeSelf(const std::string& id, overlay::v1::Node* node) const {
  node->set_id(id);
  wg::describeNode(impl_->device_.publicKey(), impl_->cidrs_, endpoints(), node);
}

bool Overlay::applyPeerUpdate(const overlay::v1::CoordinateResponse_PeerUpdate& u) {
  auto log = impl_->log_;
  using Kind = overlay::v1::CoordinateResponse_PeerUpdate;
  auto known = impl_->peers_.find(u.id());
  if (u.kind() == Kind::KIND_DISCONNECTED || u.kind() == Kind::KIND_LOST) {
    if (known != impl_->peers_.end()) {
      impl_->device_.removePeer(known->second);
      impl_->peers_.erase(known);
      log->info("overlay peer {} {}", u.id(),
                u.kind() == Kind::KIND_LOST ? "lost" : "disconnected");
    }
    return false;
  }
  if (u.kind() != Kind::KIND_NODE) return false;
  auto peer = wg::peerFromNode(u.node());
  if (!peer) {
    log->warn("overlay peer {}: {}, ignored", u.id(), peer.error());
    return false;
  }
  const wg::PeerConfig& pc = *peer;
  bool new_key = known != impl_->peers_.end() && known->second != pc.public_key;
  if (new_key) impl_->device_.removePeer(known->second);  // the peer restarted
  if (auto st = impl_->device_.setPeer(pc); !st) {
    log->warn("overlay peer {}: {}", u.id(), st.error());
    return false;
  }
  bool added = known == impl_->peers_.end();
  impl_->peers_[u.id()] = pc.public_key;
  if (added) log->info("overlay peer {} added ({} allowed IPs)", u.id(), pc.allowed_ips->size());
  return added || new_key;
}

std::shared_ptr<Routine> Overlay::makeCoordinator(AgentApi& api, const std::string& agent_id) {
  return std::make_shared<Coordinator>(*this, impl_->alive_, api, agent_id);
}

}  // namespace wsa::agent
