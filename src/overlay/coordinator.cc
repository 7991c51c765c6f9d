#include "wsa/overlay/coordinator.h"

#include <algorithm>

#include "wsa/common/logging.h"
#include "wsa/overlay/engine.h"
#include "wsa/overlay/node.h"
#include "wsa/overlay/v1/coordinate.pb.h"

namespace wsa::overlay {

namespace ov = overlay::v1;

class Coordinator::Impl {
 public:
  Impl(Engine& engine, Clock& clock, CoordinatorOptions options, CoordinatorHooks hooks)
      : engine_(engine),
        clock_(clock),
        options_(std::move(options)),
        hooks_(std::move(hooks)),
        log_(logging::get(options_.logger)) {}

  struct Known {
    wg::PeerConfig node;  // as the node describes it
    Route route = Route::kPublished;
    std::vector<wg::Endpoint> candidates;
    bool probes = false;
  };

  uint64_t start(const std::string& id, CoordinatorTransport transport, Done done);
  void stop(uint64_t session);
  void onResponse(uint64_t session, const ov::CoordinateResponse& r);
  void onStreamDone(uint64_t session);
  // Returns true when the update added a peer or changed its key: the peer may handshake now.
  bool apply(const ov::CoordinateResponse_PeerUpdate& u);
  void describeSelf(ov::Node* node);
  std::vector<std::pair<wg::Endpoint, int>> candidates() const;
  void forget(const wg::PublicKey& key) {
    engine_.device().removePeer(key);
    engine_.paths().removePeer(key);
  }
  Status configure(const Known& k);
  void emit(const PeerEvent& e) {
    if (hooks_.on_peer) hooks_.on_peer(e);
  }

  // --- the relay stream ---
  void startRelay();
  void openRelay();
  void stopRelay();
  void dropRelay();

  Engine& engine_;
  Clock& clock_;
  CoordinatorOptions options_;
  CoordinatorHooks hooks_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::map<std::string, Known> peers_;  // coordinated peers by id

  // The session: its number (0: none), its transport and stream.
  uint64_t session_ = 0;
  uint64_t sessions_ = 0;
  bool first_response_ = false;
  CoordinatorTransport transport_;
  std::shared_ptr<control::CoordinateStream> stream_;

  bool relay_on_ = false;                    // the session wants a relay stream
  std::optional<std::string> relay_ticket_;  // serialized overlay.v1.RelayTicket
  uint64_t relay_gen_ = 0;
  std::string id_;
  Coordinator::Discovered discovered_;
  // ready_for_handshake held back until the relay stream is up (bounded).
  static constexpr size_t kMaxPendingReady = 4096;
  std::vector<std::string> pending_ready_;
  void sendPendingReady() {
    if (pending_ready_.empty() || session_ == 0 || !stream_) return;
    ov::CoordinateRequest ready;
    for (const auto& id : pending_ready_) ready.add_ready_for_handshake()->set_id(id);
    pending_ready_.clear();
    stream_->send(ready);
  }
  std::unique_ptr<Discovery> discovery_;
  std::unique_ptr<Timer> interfaces_timer_;
  std::vector<std::pair<wg::Endpoint, int>> last_local_;
  void watchInterfaces();
  void onReport(const DiscoveryReport& r);
  std::unique_ptr<Timer> relay_timer_;
  Duration relay_backoff_{};
  bool relay_warned_ = false;
};

uint64_t Coordinator::Impl::start(const std::string& id, CoordinatorTransport transport,
                                  Done done) {
  if (session_ != 0) stop(session_);
  if (!transport.coordinate) return 0;
  uint64_t session = ++sessions_;
  std::weak_ptr<bool> alive = alive_;
  control::CoordinateStream::Callbacks cb;
  cb.on_response = [this, alive, session](ov::CoordinateResponse r) {
    if (!alive.expired()) onResponse(session, r);
  };
  // The end is delivered even when the coordinator is gone: the session's owner waits for it.
  cb.on_done = [this, alive, session, done = std::move(done)](int code, std::string message) {
    if (!alive.expired()) onStreamDone(session);
    if (done) done(code, std::move(message));
  };
  auto stream = transport.coordinate(std::move(cb));
  if (!stream) return 0;  // a transport without coordination: nothing runs
  session_ = session;
  first_response_ = false;
  transport_ = std::move(transport);
  stream_ = std::move(stream);

  id_ = id;
  ov::CoordinateRequest req;
  describeSelf(req.mutable_update_self()->mutable_node());
  // A request carries one tunnel: the first goes with our node, any others follow.
  for (size_t i = 0; i < options_.add_tunnels.size(); ++i) {
    if (i > 0) req.Clear();
    req.mutable_add_tunnel()->set_id(options_.add_tunnels[i]);
    stream_->send(req);
  }
  if (options_.add_tunnels.empty()) stream_->send(req);
  if (options_.relay.open == CoordinatorOptions::Relay::Open::kWithSession) startRelay();
  return session;
}

void Coordinator::Impl::stop(uint64_t session) {
  if (session == 0 || session != session_) return;
  session_ = 0;
  pending_ready_.clear();
  stopRelay();
  if (stream_) stream_->cancel();
  stream_.reset();
  transport_ = {};
}

void Coordinator::Impl::onStreamDone(uint64_t session) {
  if (session != session_) return;
  session_ = 0;
  pending_ready_.clear();
  stopRelay();
  stream_.reset();
  transport_ = {};
}

void Coordinator::Impl::onResponse(uint64_t session, const ov::CoordinateResponse& r) {
  if (session != session_) return;
  if (!first_response_) {
    first_response_ = true;
    // The server has our node by now (it answered), so the relay's hello, which must name a
    // published key, is accepted.
    if (options_.relay.open == CoordinatorOptions::Relay::Open::kAfterFirstResponse) {
      startRelay();
    }
  }
  if (r.has_relay_ticket()) {
    relay_ticket_ = r.relay_ticket().SerializeAsString();
    if (engine_.relayStream()) engine_.relayStream()->setTicket(*relay_ticket_);
    if (hooks_.on_relay_ticket) {
      std::weak_ptr<bool> alive = alive_;
      hooks_.on_relay_ticket(*relay_ticket_);
      if (alive.expired() || session != session_) return;  // the hook ended it
    }
  }
  if (!r.error().empty()) {
    if (hooks_.on_server_error) {
      if (!hooks_.on_server_error(r.error())) return;
    } else {
      log_->warn("coordination: {}", r.error());
    }
  }
  std::weak_ptr<bool> alive = alive_;
  ov::CoordinateRequest ready;
  for (const auto& u : r.peer_updates()) {
    bool ready_now = apply(u);
    if (alive.expired() || session != session_) return;  // a hook ended it
    if (ready_now && options_.answer_ready_for_handshake) {
      ready.add_ready_for_handshake()->set_id(u.id());
    }
  }
  // Tell the new peers (clients wait for it) that their first handshake will be answered —
  // once our relay stream is up when we keep one: a client's first initiation usually comes
  // through the relay, and our answer would be lost without it (the client would retry only
  // after REKEY_TIMEOUT, 5 s).
  if (ready.ready_for_handshake_size() > 0 && stream_) {
    if (relay_on_ && !engine_.relayReady()) {
      for (const auto& peer : ready.ready_for_handshake()) {
        if (pending_ready_.size() < kMaxPendingReady) pending_ready_.push_back(peer.id());
      }
    } else {
      stream_->send(ready);
    }
  }
}

// Our node: id, key, addresses, and (unless told not to publish them) the endpoints — the
// configured ones or this machine's addresses, then the reflexive ones STUN found — each with
// its kind; that we answer probes; what discovery measured.
void Coordinator::Impl::describeSelf(ov::Node* node) {
  node->set_id(id_);
  auto cands = candidates();
  std::vector<std::string> endpoints;
  for (const auto& [e, kind] : cands) endpoints.push_back(e.toString());
  describeNode(engine_.publicKey(), engine_.cidrs(), endpoints, node);
  for (const auto& [e, kind] : cands) {
    auto* c = node->add_candidates();
    c->set_address(e.toString());
    c->set_kind(static_cast<ov::Candidate::Kind>(kind));
  }
  node->set_probes(options_.probes);
  node->set_mapping_varies(static_cast<ov::MappingVaries>(discovered_.mapping_varies));
  node->set_preferred_relay(discovered_.preferred_relay);
  for (const auto& [region, ms] : discovered_.relay_latency_ms) {
    (*node->mutable_relay_latency_ms())[region] = ms;
  }
  std::vector<wg::Endpoint> own;
  for (const auto& [e, kind] : cands) own.push_back(e);
  engine_.paths().setOwnCandidates(std::move(own));
}

std::vector<std::pair<wg::Endpoint, int>> Coordinator::Impl::candidates() const {
  std::vector<std::pair<wg::Endpoint, int>> out;
  if (!options_.publish_endpoints) return out;
  auto add = [&out](const wg::Endpoint& e, int kind) {
    for (const auto& [have, k] : out) {
      if (have == e) return;
    }
    out.emplace_back(e, kind);
  };
  int local_kind =
      options_.endpoints.empty() ? ov::Candidate::KIND_LOCAL : ov::Candidate::KIND_CONFIGURED;
  for (const auto& text : publishedEndpoints(options_.endpoints, engine_.udpPort())) {
    if (auto e = wg::parseEndpoint(text)) add(*e, local_kind);
  }
  // A NAT whose mapping varies by destination makes the reflexive endpoint useless to peers.
  if (discovered_.mapping_varies != ov::MAPPING_VARIES_YES) {
    for (const auto& e : discovered_.reflexive) add(e, ov::Candidate::KIND_REFLEXIVE);
  }
  return out;
}

Status Coordinator::Impl::configure(const Known& k) {
  if (k.route == Route::kNone) return {};
  wg::PeerConfig pc = k.node;
  if (k.route == Route::kPaths) {
    // PeerPaths sets the endpoint (the relay first) and keeps it: no roaming.
    pc.endpoint.reset();
    pc.roaming = false;
    if (auto st = engine_.device().setPeer(pc); !st) return st;
    engine_.paths().upsertPeer(pc.public_key, k.candidates);
    return {};
  }
  pc.roaming = true;
  engine_.paths().removePeer(pc.public_key);
  if (k.route == Route::kRelay) pc.endpoint = engine_.relayEndpointFor(pc.public_key);
  return engine_.device().setPeer(pc);
}

bool Coordinator::Impl::apply(const ov::CoordinateResponse_PeerUpdate& u) {
  using Kind = ov::CoordinateResponse_PeerUpdate;
  if (options_.tunnel_peers_only &&
      std::find(options_.add_tunnels.begin(), options_.add_tunnels.end(), u.id()) ==
          options_.add_tunnels.end()) {
    return false;
  }
  auto known = peers_.find(u.id());
  if (u.kind() == Kind::KIND_READY_FOR_HANDSHAKE) {
    emit({.kind = PeerEvent::Kind::kReadyForHandshake, .id = u.id()});
    return false;
  }
  if (u.kind() == Kind::KIND_DISCONNECTED || u.kind() == Kind::KIND_LOST) {
    const char* what = u.kind() == Kind::KIND_LOST ? "lost" : "disconnected";
    if (known != peers_.end() && options_.remove_departed_peers) {
      forget(known->second.node.public_key);
      peers_.erase(known);
      log_->info("overlay peer {} {}", u.id(), what);
    }
    emit({.kind = PeerEvent::Kind::kDeparted, .id = u.id(), .reason = u.reason()});
    return false;
  }
  if (u.kind() != Kind::KIND_NODE) return false;
  auto peer = peerFromNode(u.node());
  if (!peer) {
    log_->warn("overlay peer {}: {}, ignored", u.id(), peer.error());
    emit({.kind = PeerEvent::Kind::kRejected, .id = u.id(), .error = peer.error()});
    return false;
  }
  bool added = known == peers_.end();
  bool new_key = !added && known->second.node.public_key != peer->public_key;
  bool probes = options_.probes && u.node().probes();
  Route route = added ? options_.default_route : known->second.route;
  if (added && route == Route::kPublished && probes) route = Route::kPaths;
  Known k{*peer, route, candidatesOf(u.node()), probes};
  if (new_key) forget(known->second.node.public_key);  // the peer restarted
  if (auto st = configure(k); !st) {
    log_->warn("overlay peer {}: {}", u.id(), st.error());
    if (new_key) peers_.erase(known);  // its old key is gone from the device
    emit({.kind = PeerEvent::Kind::kRejected, .id = u.id(), .error = st.error()});
    return false;
  }
  const wg::PeerConfig& node = (peers_[u.id()] = std::move(k)).node;
  if (added) {
    log_->info("overlay peer {} added ({} allowed IPs)", u.id(),
               node.allowed_ips ? node.allowed_ips->size() : 0);
  }
  emit({.kind = added     ? PeerEvent::Kind::kAdded
                : new_key ? PeerEvent::Kind::kNewKey
                          : PeerEvent::Kind::kChanged,
        .id = u.id(),
        .node = &node});
  return added || new_key;
}

// The relay stream lives as long as the session. It is opened again (with backoff) when it
// ends: the server may not have our node yet (the hello names a key published through
// Coordinate, a different stream), or the server restarted.
void Coordinator::Impl::startRelay() {
  if (!transport_.relay) return;
  relay_on_ = true;
  relay_backoff_ = options_.relay.backoff_floor;
  if (!relay_timer_) relay_timer_ = clock_.createTimer();
  openRelay();
}

void Coordinator::Impl::openRelay() {
  if (!relay_on_) return;
  uint64_t gen = ++relay_gen_;
  std::weak_ptr<bool> alive = alive_;
  control::RelayStream::Callbacks cb;
  cb.on_ready = [this, alive, gen] {
    if (alive.expired() || gen != relay_gen_) return;
    relay_backoff_ = options_.relay.backoff_floor;
    log_->info("relay: connected through the control server");
    relay_warned_ = false;
    engine_.relayConnected();
    sendPendingReady();
    if (hooks_.on_relay_ready) hooks_.on_relay_ready();
  };
  cb.on_packets = [this, alive, gen](control::RelayStream::Packets p) {
    if (alive.expired() || gen != relay_gen_) return;
    engine_.deliverRelayed(std::move(p));
  };
  cb.on_done = [this, alive, gen](int code, std::string message) {
    if (alive.expired() || gen != relay_gen_) return;
    dropRelay();
    if (hooks_.on_relay_ended) hooks_.on_relay_ended(code, message);
    if (alive.expired() || !relay_on_ || !options_.relay.reopen) return;
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
    relay_backoff_ = std::min<Duration>(relay_backoff_ * 2, options_.relay.backoff_cap);
  };
  if (relay_ticket_) cb.ticket = *relay_ticket_;
  engine_.setRelayStream(transport_.relay(engine_.publicKey(), std::move(cb)));
}

void Coordinator::Impl::stopRelay() {
  relay_on_ = false;
  ++relay_gen_;
  if (relay_timer_) relay_timer_->cancel();
  if (engine_.relayStream()) engine_.relayStream()->cancel();
  dropRelay();
}

void Coordinator::Impl::dropRelay() {
  if (engine_.relayStream()) engine_.setRelayStream(nullptr);
}

Coordinator::Coordinator(Engine& engine, Clock& clock, CoordinatorOptions options,
                         CoordinatorHooks hooks)
    : impl_(std::make_unique<Impl>(engine, clock, std::move(options), std::move(hooks))) {}

Coordinator::~Coordinator() {
  impl_->engine_.setStunReceiver(nullptr);
  impl_->stop(impl_->session_);
  impl_->stopRelay();
}

void Coordinator::Impl::onReport(const DiscoveryReport& r) {
  Coordinator::Discovered d;
  d.reflexive = r.reflexive;
  d.mapping_varies = static_cast<int>(r.varies);
  d.relay_latency_ms = r.latency_ms;
  d.preferred_relay = nearestRegion(r.latency_ms);  // home: the lowest STUN round trip
  std::string refl;
  for (const auto& e : r.reflexive) refl += (refl.empty() ? "" : ", ") + e.toString();
  log_->info("endpoint discovery: reflexive {}, mapping varies by destination: {}, home region {}",
             refl.empty() ? "(none)" : refl, mappingVariesName(r.varies), d.preferred_relay);
  if (d == discovered_) return;
  discovered_ = d;
  // Probes answered from the reflexive endpoints need them as our own candidates too.
  std::vector<wg::Endpoint> own;
  for (const auto& [e, kind] : candidates()) own.push_back(e);
  engine_.paths().setOwnCandidates(std::move(own));
  if (session_ != 0 && stream_) {
    ov::CoordinateRequest req;
    describeSelf(req.mutable_update_self()->mutable_node());
    stream_->send(req);
  }
}

// The interface addresses, compared with what was published: a change (a new Wi-Fi, a VPN
// coming up) republishes and starts a STUN round at once.
void Coordinator::Impl::watchInterfaces() {
  std::weak_ptr<bool> alive = alive_;
  interfaces_timer_->schedule(options_.interfaces_interval, [this, alive] {
    if (alive.expired()) return;
    auto now = candidates();
    std::vector<std::pair<wg::Endpoint, int>> local;
    for (const auto& c : now) {
      if (c.second != ov::Candidate::KIND_REFLEXIVE) local.push_back(c);
    }
    if (local != last_local_) {
      log_->info("this machine's addresses changed: publishing them and rediscovering");
      last_local_ = local;
      if (session_ != 0 && stream_) {
        ov::CoordinateRequest req;
        describeSelf(req.mutable_update_self()->mutable_node());
        stream_->send(req);
      }
      if (discovery_) discovery_->rediscover();
    }
    watchInterfaces();
  });
}

void Coordinator::setStunTargets(std::vector<StunTarget> targets) {
  Impl& m = *impl_;
  if (!m.discovery_) {
    m.discovery_ = std::make_unique<Discovery>(
        m.clock_, m.options_.discovery,
        [&m](const wg::Endpoint& to, std::span<const uint8_t> d) { m.engine_.sendUdp(to, d); },
        [&m](const DiscoveryReport& r) { m.onReport(r); });
    m.engine_.setStunReceiver([&m](const wg::Endpoint& from, std::span<const uint8_t> d) {
      return m.discovery_->onDatagram(from, d);
    });
    m.interfaces_timer_ = m.clock_.createTimer();
    for (const auto& c : m.candidates()) {
      if (c.second != ov::Candidate::KIND_REFLEXIVE) m.last_local_.push_back(c);
    }
    m.watchInterfaces();
  }
  if (targets.empty()) {
    m.discovery_->stop();
    return;
  }
  m.discovery_->setTargets(std::move(targets));
  m.discovery_->start();
}

const Discovery::Stats* Coordinator::discoveryStats() const {
  return impl_->discovery_ ? &impl_->discovery_->stats() : nullptr;
}

const DiscoveryReport* Coordinator::discoveryReport() const {
  return impl_->discovery_ ? &impl_->discovery_->last() : nullptr;
}

uint64_t Coordinator::start(const std::string& id, CoordinatorTransport transport, Done done) {
  return impl_->start(id, std::move(transport), std::move(done));
}

void Coordinator::stop(uint64_t session) {
  impl_->stop(session);
}

bool Coordinator::running() const {
  return impl_->session_ != 0;
}

bool Coordinator::peerAnswersProbes(const std::string& id) const {
  auto it = impl_->peers_.find(id);
  return it != impl_->peers_.end() && it->second.probes;
}

void Coordinator::setDiscovered(const Discovered& discovered) {
  if (impl_->discovered_ == discovered) return;
  impl_->discovered_ = discovered;
  republish();
}

void Coordinator::republish() {
  if (impl_->session_ == 0 || !impl_->stream_) return;
  ov::CoordinateRequest req;
  impl_->describeSelf(req.mutable_update_self()->mutable_node());
  impl_->stream_->send(req);
}

std::vector<std::pair<wg::Endpoint, int>> Coordinator::ownCandidates() const {
  return impl_->candidates();
}

Status Coordinator::setRoute(const std::string& id, Route route) {
  auto it = impl_->peers_.find(id);
  if (it == impl_->peers_.end()) return makeError("no overlay peer " + id);
  it->second.route = route;
  return impl_->configure(it->second);
}

const std::string* Coordinator::relayTicket() const {
  return impl_->relay_ticket_ ? &*impl_->relay_ticket_ : nullptr;
}

const wg::PeerConfig* Coordinator::peer(const std::string& id) const {
  auto it = impl_->peers_.find(id);
  return it == impl_->peers_.end() ? nullptr : &it->second.node;
}

size_t Coordinator::peerCount() const {
  return impl_->peers_.size();
}

bool Coordinator::applyPeerUpdate(const overlay::v1::CoordinateResponse_PeerUpdate& update) {
  return impl_->apply(update);
}

}  // namespace wsa::overlay
