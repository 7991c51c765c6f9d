#include "wsa/overlay/engine.h"

#include <asio/io_context.hpp>

#include "overlay/probe.h"
#include "overlay/relay_path.h"
#include "wsa/common/logging.h"
#include "wsa/common/metrics.h"
#include "wsa/netstack/forward.h"
#include "wsa/netstack/udp_forward.h"
#include "wsa/stun/stun.h"
#include "wsa/wg/metrics.h"
#include "wsa/wg/relay_endpoints.h"
#include "wsa/wg/tun.h"
#include "wsa/wg/uapi.h"
#include "wsa/wg/udp.h"

namespace wsa::overlay {

// Members in teardown order, last first: the configuration socket, the stack (it sends its
// final resets through the device), the forwarder go in shutdown(); the UDP bind, the TUN and
// the device with the engine.
class Engine::Impl {
 public:
  Impl(asio::io_context& io, Clock& clock, EngineOptions options)
      : io_(io),
        options_(std::move(options)),
        device_(clock, deviceOptions(options_),
                wg::Device::Io{
                    .send = [this](const wg::Endpoint& to,
                                   std::span<const uint8_t> d) { sendDatagram(to, d); },
                    .deliver =
                        [this](std::span<const uint8_t> p) {
                          if (tun_) tun_->write(p);
                          if (stack_) stack_->input(p);
                        },
                }),
        paths_(clock, options_.path_timing, pathsIo(), options_.logger),
        log_(logging::get(options_.logger)) {}

  PeerPaths::Io pathsIo() {
    PeerPaths::Io io;
    io.send = [this](const wg::Endpoint& to, std::span<const uint8_t> d) { sendDatagram(to, d); };
    io.relay_endpoint = [this](const wg::PublicKey& key) { return relay_.endpointFor(key); };
    io.set_endpoint = [this](const wg::PublicKey& key, const wg::Endpoint& e) {
      if (!device_.peer(key)) return;  // removed meanwhile: not added back
      wg::PeerConfig pc;
      pc.public_key = key;
      pc.endpoint = e;
      if (auto st = device_.setPeer(pc); !st) log_->warn("{}: {}", options_.name, st.error());
    };
    io.traffic = [this](const wg::PublicKey& key) -> uint64_t {
      auto st = device_.peer(key);
      return st ? st->rx_packets + st->tx_packets : 0;
    };
    io.path_changed = [this](const wg::PublicKey& key, Path) {
      // Our initiation sent over the old path (a relay the peer was not yet connected to, a
      // direct path that died) may be lost; WireGuard would retry after REKEY_TIMEOUT (5 s).
      // Younger than 250 ms, its answer may still be on the way (a second one would cancel it).
      device_.retryHandshake(key, std::chrono::milliseconds(250));
    };
    return io;
  }

  void sendDatagram(const wg::Endpoint& to, std::span<const uint8_t> d) {
    if (!relay_.send(to, d) && udp_) udp_->send(to, d);
  }

  // Every datagram from the UDP socket or the relay: probes, STUN answers, WireGuard.
  void receive(const wg::Endpoint& from, std::span<uint8_t> d) {
    if (probe::isProbe(d)) return paths_.receive(from, d);
    if (isStunResponse(d) && stun_receiver_ && stun_receiver_(from, d)) return;
    device_.receive(from, d);
  }

  // A STUN Binding response (success or error): WireGuard's messages start with their type
  // (1-4) and three zero bytes, probes with their magic; neither passes looksLikeStun.
  static bool isStunResponse(std::span<const uint8_t> d) {
    if (!stun::looksLikeStun(d)) return false;
    uint16_t type = stun::peekHeader(d).type;
    return type == stun::kBindingSuccess || type == stun::kBindingError;
  }

  static wg::DeviceOptions deviceOptions(const EngineOptions& o) {
    wg::DeviceOptions d;
    d.mtu = o.mtu;
    return d;
  }

  Result<std::unique_ptr<wg::UdpBind>> bindUdp(uint16_t port) {
    return wg::UdpBind::open(
        io_, port, [this](const wg::Endpoint& from, std::span<uint8_t> d) { receive(from, d); });
  }

  Status startPackets();
  void startUdpForwarder(Clock& clock);
  Status startConfigSocket();

  asio::io_context& io_;
  EngineOptions options_;
  std::vector<std::string> addresses_;
  std::vector<std::string> cidrs_;
  // Accepts and gate decisions are handed over from the loop: one may arrive after shutdown().
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  wg::Device device_;
  RelayPath relay_;
  PeerPaths paths_;
  std::function<bool(const wg::Endpoint&, std::span<const uint8_t>)> stun_receiver_;
  std::unique_ptr<wg::Tun> tun_;
  std::unique_ptr<wg::UdpBind> udp_;
  std::unique_ptr<netstack::LocalForwarder> forwarder_;
  std::unique_ptr<netstack::Netstack> stack_;
  std::unique_ptr<netstack::UdpForwarder>
      udp_forwarder_;  // goes before the stack it replies through
  std::unique_ptr<wg::UapiServer> uapi_;
  std::shared_ptr<spdlog::logger> log_;
};

Status Engine::Impl::startPackets() {
  if (options_.packets == EngineOptions::Packets::kTun) {
    auto t = wg::Tun::open(
        io_, options_.tun_name, static_cast<int>(options_.mtu),
        [this](std::span<const uint8_t> p) { device_.send(p); },
        [this](const std::string& error) {
          if (options_.on_tun_error) options_.on_tun_error(error);
        });
    if (!t) return makeError(t.error());
    tun_ = std::move(*t);
    return {};
  }
  netstack::Options nopts;
  nopts.addresses = addresses_;
  nopts.mtu = static_cast<uint16_t>(options_.mtu);
  auto stack = netstack::Netstack::create(io_, nopts,
                                          [this](std::span<const uint8_t> p) { device_.send(p); });
  if (!stack) return makeError(stack.error());
  stack_ = std::move(*stack);
  if (options_.forward_to_loopback) {
    // Every port without a listener goes to this machine's loopback; the gate connects there
    // first, so a closed port is refused to the overlay peer.
    forwarder_ =
        std::make_unique<netstack::LocalForwarder>(io_, netstack::LocalForwarder::Options{});
    stack_->setForwarder(
        [this, alive = alive_](net::ByteStreamPtr s, const netstack::ConnectionInfo& info) {
          if (!*alive || !forwarder_) return;
          forwarder_->forward(std::move(s), info.local_port, info.remote);
        },
        [this, alive = alive_](const netstack::ConnectionInfo& info,
                               std::function<void(bool)> admit) {
          if (!*alive || !forwarder_) return admit(false);
          forwarder_->gate(info.local_port, info.remote, std::move(admit));
        });
  }
  return {};
}

// UDP to ports without a socket of ours goes to this machine's loopback, one socket per flow.
void Engine::Impl::startUdpForwarder(Clock& clock) {
  if (!stack_ || !options_.forward_to_loopback) return;
  netstack::UdpForwarder::Hooks hooks;
  hooks.reply = [this, alive = alive_](const netstack::UdpInfo& flow,
                                       std::span<const uint8_t> payload) -> Status {
    if (!*alive || !stack_) return makeError("the overlay is shutting down");
    return stack_->sendUdp(flow, payload);
  };
  hooks.port_idle = [this, alive = alive_](uint16_t port) {
    if (*alive && stack_) stack_->releaseUdpPort(port);
  };
  udp_forwarder_ = std::make_unique<netstack::UdpForwarder>(
      io_, clock, netstack::UdpForwarder::Options{}, std::move(hooks));
  stack_->setUdpForwarder(
      [this, alive = alive_](const netstack::UdpInfo& info, std::span<const uint8_t> payload) {
        if (*alive && udp_forwarder_) udp_forwarder_->forward(info, payload);
      });
}

Status Engine::Impl::startConfigSocket() {
  if (options_.config_socket.empty()) return {};
  wg::UapiHooks hooks;
  hooks.listen_port = [this] { return udp_ ? udp_->port() : uint16_t{0}; };
  hooks.set_listen_port = [this](uint16_t port) -> Status {
    if (port == 0 || (udp_ && udp_->port() == port)) return {};
    auto nb = bindUdp(port);
    if (!nb) return makeError(nb.error());
    udp_ = std::move(*nb);
    log_->info("{}: listening on UDP port {}", options_.name, udp_->port());
    return {};
  };
  auto uapi = wg::UapiServer::listen(io_, options_.config_socket, device_, hooks);
  if (!uapi) return makeError(uapi.error());
  uapi_ = std::move(*uapi);
  return {};
}

Result<std::unique_ptr<Engine>> Engine::start(asio::io_context& io, Clock& clock,
                                              EngineOptions options, EnginePart* failed) {
  auto fail = [failed](EnginePart part, const std::string& message) -> Error {
    if (failed != nullptr) *failed = part;
    return makeError(message);
  };
  if (failed != nullptr) *failed = EnginePart::kNone;
  std::unique_ptr<Engine> e(new Engine());
  e->impl_ = std::make_unique<Impl>(io, clock, std::move(options));
  Impl& impl = *e->impl_;
  for (const auto& a : impl.options_.addresses) {
    impl.addresses_.push_back(a.substr(0, a.find('/')));
    impl.cidrs_.push_back(a.find('/') == std::string::npos
                              ? a + (a.find(':') == std::string::npos ? "/32" : "/128")
                              : a);
  }
  wg::Secret key = wg::generatePrivateKey();
  impl.device_.setPrivateKey(key);
  impl.paths_.setKey(key);
  if (auto st = impl.startPackets(); !st) return fail(EnginePart::kPackets, st.error());
  impl.startUdpForwarder(clock);
  auto udp = impl.bindUdp(impl.options_.udp_port);
  if (!udp) return fail(EnginePart::kUdp, udp.error());
  impl.udp_ = std::move(*udp);
  if (auto st = impl.startConfigSocket(); !st) return fail(EnginePart::kConfigSocket, st.error());
  return e;
}

Engine::~Engine() {
  if (impl_) shutdown();
}

void Engine::shutdown() {
  *impl_->alive_ = false;
  impl_->uapi_.reset();
  // The UDP forwarder's flows close (their loopback sockets with them) while the stack exists.
  if (impl_->stack_) impl_->stack_->setUdpForwarder(nullptr);
  impl_->udp_forwarder_.reset();
  // The stack goes before the device it sends through (open connections end with a reset).
  impl_->stack_.reset();
  impl_->forwarder_.reset();
}

void Engine::drainCompletions(asio::io_context& io) {
  for (int i = 0; i < 1000; ++i) {
    io.restart();
    if (io.poll() == 0) break;
  }
}

wg::Device& Engine::device() {
  return impl_->device_;
}
const wg::Device& Engine::device() const {
  return impl_->device_;
}
const wg::PublicKey& Engine::publicKey() const {
  return impl_->device_.publicKey();
}
std::string Engine::publicKeyBase64() const {
  return wg::toBase64(impl_->device_.publicKey());
}
uint16_t Engine::udpPort() const {
  return impl_->udp_ ? impl_->udp_->port() : 0;
}
const std::vector<std::string>& Engine::addresses() const {
  return impl_->addresses_;
}
const std::vector<std::string>& Engine::cidrs() const {
  return impl_->cidrs_;
}
const EngineOptions& Engine::options() const {
  return impl_->options_;
}

Status Engine::listen(uint16_t port, Accept on_accept) {
  if (!impl_->stack_) return makeError("no userspace network stack");
  return impl_->stack_->listen(port, std::move(on_accept));
}

void Engine::dial(const std::string& address, uint16_t port, Dialed done) {
  if (!impl_->stack_) return done(makeError("no userspace network stack"));
  impl_->stack_->dial(address, port, std::move(done));
}

void Engine::forwardToLoopback(net::ByteStreamPtr stream, uint16_t port) {
  if (!impl_->forwarder_) {
    stream->abort();
    return;
  }
  impl_->forwarder_->forward(std::move(stream), port);
}

Result<std::unique_ptr<netstack::UdpFlow>> Engine::openUdp(
    const std::string& address, uint16_t port, netstack::UdpFlow::OnDatagram on_datagram) {
  if (!impl_->stack_) return makeError("no userspace network stack");
  return impl_->stack_->openUdp(address, port, std::move(on_datagram));
}

Status Engine::listenUdp(uint16_t port, netstack::Netstack::UdpReceive on_datagram) {
  if (!impl_->stack_) return makeError("no userspace network stack");
  return impl_->stack_->listenUdp(port, std::move(on_datagram));
}

Status Engine::sendUdp(const netstack::UdpInfo& flow, std::span<const uint8_t> payload) {
  if (!impl_->stack_) return makeError("no userspace network stack");
  return impl_->stack_->sendUdp(flow, payload);
}

void Engine::setRelayStream(std::shared_ptr<control::RelayStream> stream) {
  impl_->relay_.setStream(std::move(stream));
}
const std::shared_ptr<control::RelayStream>& Engine::relayStream() const {
  return impl_->relay_.stream();
}
bool Engine::relayReady() const {
  return impl_->relay_.ready();
}
void Engine::deliverRelayed(control::RelayStream::Packets packets) {
  for (auto& [key, payload] : packets) {
    impl_->receive(impl_->relay_.endpointFor(key),
                   {reinterpret_cast<uint8_t*>(payload.data()), payload.size()});
  }
}
void Engine::relayConnected() {
  for (const auto& st : impl_->device_.peers()) {
    if (wg::RelayEndpoints::isRelay(st.endpoint)) {
      impl_->device_.retryHandshake(st.public_key, std::chrono::milliseconds(250));
    }
  }
}
PeerPaths& Engine::paths() {
  return impl_->paths_;
}
const PeerPaths& Engine::paths() const {
  return impl_->paths_;
}
void Engine::sendUdp(const wg::Endpoint& to, std::span<const uint8_t> datagram) {
  if (impl_->udp_) impl_->udp_->send(to, datagram);
}
void Engine::setStunReceiver(
    std::function<bool(const wg::Endpoint&, std::span<const uint8_t>)> receiver) {
  impl_->stun_receiver_ = std::move(receiver);
}
wg::Endpoint Engine::relayEndpointFor(const wg::PublicKey& key) {
  return impl_->relay_.endpointFor(key);
}

const wg::UdpBind* Engine::udp() const {
  return impl_->udp_.get();
}
const wg::Tun* Engine::tun() const {
  return impl_->tun_.get();
}
const netstack::Netstack* Engine::stack() const {
  return impl_->stack_.get();
}
const netstack::LocalForwarder* Engine::forwarder() const {
  return impl_->forwarder_.get();
}
const netstack::UdpForwarder* Engine::udpForwarder() const {
  return impl_->udp_forwarder_.get();
}

void Engine::collectWgMetrics(metrics::Families& out) const {
  const Impl* impl = impl_.get();
  wg::MetricsSources src{&impl->device_, [impl] { return impl->udp_.get(); },
                         [impl] { return impl->tun_.get(); }};
  wg::collectMetrics(src, impl->options_.name, out);
}

void Engine::collectMetrics(metrics::Families& out) const {
  collectWgMetrics(out);
  if (const auto* stack = impl_->stack_.get()) {
    const auto& ns = stack->stats();
    out.counter("wsa_overlay_tcp_accepted_total", "Overlay TCP connections accepted",
                ns.tcp_accepted);
    out.counter("wsa_overlay_tcp_refused_total",
                "Overlay TCP connections refused at the connection limit", ns.tcp_refused);
    out.gauge("wsa_overlay_tcp_connections", "Overlay TCP connections open", ns.connections);
    out.gauge("wsa_overlay_tcp_buffered_bytes", "Received overlay TCP data not yet read",
              ns.buffered_rx_bytes);
    out.counter("wsa_overlay_packets_invalid_total", "Packets the network stack could not take",
                ns.rx_invalid);
  }
  if (const auto* fwd = impl_->forwarder_.get()) {
    const auto& fs = fwd->stats();
    out.counter("wsa_overlay_forwarded_connections_total", "Connections forwarded to the loopback",
                fs.connections);
    out.counter("wsa_overlay_forward_refused_total",
                "Forwards refused: nothing listens on the loopback", fs.refused);
    out.counter("wsa_overlay_forward_rejected_total", "Forwards rejected at the active limit",
                fs.rejected);
  }
  if (const auto* stack = impl_->stack_.get()) {
    const auto& ns = stack->stats();
    const auto* uf = impl_->udp_forwarder_.get();
    netstack::UdpForwardStats us = uf ? uf->stats() : netstack::UdpForwardStats{};
    if (uf) {
      out.gauge("wsa_overlay_udp_flows", "Overlay UDP flows forwarded to the loopback, open",
                us.flows_open);
      out.counter("wsa_overlay_udp_flows_opened_total", "Overlay UDP flows to the loopback opened",
                  us.flows.opened);
      out.counter("wsa_overlay_udp_flows_evicted_total",
                  "Overlay UDP flows closed at the flow bound (least recently used)",
                  us.flows.evicted);
      out.counter("wsa_overlay_udp_flows_expired_total", "Overlay UDP flows closed when idle",
                  us.flows.expired);
      out.counters("wsa_overlay_udp_datagrams_total",
                   "UDP datagrams forwarded between the overlay and the loopback")
          .add(us.datagrams_to_local, {{"direction", "to_local"}})
          .add(us.datagrams_from_local, {{"direction", "from_local"}});
      out.counters("wsa_overlay_udp_bytes_total",
                   "UDP payload bytes forwarded between the overlay and the loopback")
          .add(us.bytes_to_local, {{"direction", "to_local"}})
          .add(us.bytes_from_local, {{"direction", "from_local"}});
    }
    out.counters("wsa_overlay_udp_dropped_total", "Overlay UDP datagrams dropped, by reason")
        .add(ns.udp_port_refused, {{"reason", "port_limit"}})
        .add(ns.udp_send_errors, {{"reason", "send_failed"}})
        .add(us.dropped_no_socket, {{"reason", "no_socket"}})
        .add(us.dropped_port_closed, {{"reason", "port_closed"}})
        .add(us.dropped_local_busy, {{"reason", "local_busy"}})
        .add(us.local_errors, {{"reason", "local_error"}});
  }
  const RelayPath& relay = impl_->relay_;
  auto rs = relay.stats();
  out.gauge("wsa_overlay_relay_connected", "1 while the relay stream to the control server is up",
            relay.ready() ? 1 : 0);
  out.counter("wsa_overlay_relay_streams_total", "Relay streams opened", relay.streams());
  out.counter("wsa_overlay_relay_packets_sent_total", "Datagrams sent through the relay",
              rs.packets_sent);
  out.counter("wsa_overlay_relay_packets_received_total", "Datagrams received through the relay",
              rs.packets_received);
  out.gauge("wsa_overlay_relay_queued_packets", "Datagrams waiting for the relay stream",
            rs.queued);
  out.gauge("wsa_overlay_relay_peers", "Peers with a relay stand-in endpoint",
            relay.endpoints().size());
  out.counter("wsa_overlay_relay_peers_reassigned_total",
              "Relay stand-in endpoints given to a new peer at the bound",
              relay.endpoints().reassigned());
  out.counters("wsa_overlay_relay_dropped_total", "Datagrams for the relay dropped, by reason")
      .add(rs.dropped_queue_full, {{"reason", "queue_full"}})
      .add(rs.dropped_not_ready, {{"reason", "not_ready"}})
      .add(relay.unroutable(), {{"reason", "no_stream"}});

  const ProbeStats& ps = impl_->paths_.stats();
  out.counters("wsa_overlay_probes_sent_total", "Path probe messages sent, by type")
      .add(ps.pings_sent, {{"type", "ping"}})
      .add(ps.pongs_sent, {{"type", "pong"}})
      .add(ps.call_me_maybe_sent, {{"type", "call_me_maybe"}});
  out.counters("wsa_overlay_probes_received_total", "Path probe messages received, by type")
      .add(ps.pings_received, {{"type", "ping"}})
      .add(ps.pongs_received, {{"type", "pong"}})
      .add(ps.call_me_maybe_received, {{"type", "call_me_maybe"}});
  auto dropped =
      out.counters("wsa_overlay_probes_dropped_total", "Path probe messages dropped, by reason");
  for (size_t i = 0; i < static_cast<size_t>(ProbeDrop::kCount); ++i) {
    dropped.add(ps.drops[i], {{"reason", probeDropName(static_cast<ProbeDrop>(i))}});
  }
  out.counter("wsa_overlay_path_changes_total", "Changes of a peer's path (direct or relay)",
              ps.path_changes);
  size_t direct = 0, relayed = 0;
  for (const auto& v : impl_->paths_.peers()) {
    if (v.path == Path::kDirect) ++direct;
    if (v.path == Path::kRelay) ++relayed;
  }
  out.gauges("wsa_overlay_peers_by_path", "Peers that answer probes, by their current path")
      .add(static_cast<double>(direct), {{"path", "direct"}})
      .add(static_cast<double>(relayed), {{"path", "relay"}});
}

std::vector<prometheus::MetricFamily> Engine::collectWgMetrics() const {
  metrics::Families out;
  collectWgMetrics(out);
  return out.take();
}

std::vector<prometheus::MetricFamily> Engine::collectMetrics() const {
  metrics::Families out;
  collectMetrics(out);
  return out.take();
}

}  // namespace wsa::overlay
