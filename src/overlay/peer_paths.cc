#include "wsa/overlay/peer_paths.h"

#include <algorithm>

#include "overlay/probe.h"
#include "wsa/common/logging.h"
#include "wsa/wg/relay_endpoints.h"

namespace wsa::overlay {

const char* probeDropName(ProbeDrop d) {
  switch (d) {
    case ProbeDrop::kMalformed:
      return "malformed";
    case ProbeDrop::kUnknownSender:
      return "unknown_sender";
    case ProbeDrop::kBadAuth:
      return "bad_auth";
    case ProbeDrop::kUnmatchedPong:
      return "unmatched_pong";
    case ProbeDrop::kDisabled:
      return "disabled";
    case ProbeDrop::kPendingFull:
      return "pending_full";
    case ProbeDrop::kCount:
      break;
  }
  return "?";
}

namespace {

double toMs(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct Candidate {
  wg::Endpoint ep;
  bool published = false;
  std::optional<MonoTime> last_pong;
  Duration latency{};
  std::optional<MonoTime> last_ping;
  std::optional<MonoTime> last_ping_back;  // a ping answering one of the peer's
  MonoTime last_seen{};  // learned ones: the least recently seen goes at the bound
};

struct Pending {
  wg::Endpoint to;  // where the ping went (a stand-in when through the relay)
  MonoTime sent{};
  bool heartbeat = false;
  std::function<void(std::optional<PeerPaths::Pong>)> done;
};

struct PeerState {
  wg::PublicKey key{};
  std::optional<wg::Secret> shared;
  std::vector<Candidate> cands;
  std::map<probe::TxId, Pending> pending;
  Path path = Path::kNone;
  wg::Endpoint best;
  Duration best_latency{};
  MonoTime burst_until{}, next_burst_ping{}, next_discovery{}, next_heartbeat{}, next_upgrade{};
  std::optional<MonoTime> last_active;
  uint64_t last_traffic = 0;
  bool was_active = false;
};

}  // namespace

class PeerPaths::Impl {
 public:
  Impl(Clock& clock, PathTiming timing, Io io, const std::string& logger)
      : clock_(clock),
        t_(timing),
        io_(std::move(io)),
        log_(logging::get(logger)),
        timer_(clock.createTimer()) {}

  void arm() {
    if (!timer_->armed() && !peers_.empty()) timer_->schedule(t_.tick, [this] { tick(); });
  }
  void tick();
  void expire(PeerState& p, MonoTime now);
  void drop(ProbeDrop d) { ++stats_.drops[static_cast<size_t>(d)]; }
  bool active(const PeerState& p, MonoTime now) const {
    return p.last_active && now - *p.last_active < t_.active_window;
  }

  void sendMessage(PeerState& p, const wg::Endpoint& to, const probe::Message& m) {
    if (!p.shared || !has_key_) return;
    auto bytes = probe::seal(public_, *p.shared, m);
    io_.send(to, bytes);
  }
  void sendPing(PeerState& p, const wg::Endpoint& to, bool heartbeat,
                std::function<void(std::optional<Pong>)> done = nullptr);
  void pingAll(PeerState& p) {
    for (size_t i = 0; i < p.cands.size(); ++i) sendPing(p, p.cands[i].ep, false);
  }
  void startBurst(PeerState& p, bool call_me_maybe);
  void setPath(PeerState& p, Path path, const wg::Endpoint& ep, Duration latency);
  void fallBack(PeerState& p);
  Candidate* find(PeerState& p, const wg::Endpoint& e) {
    for (auto& c : p.cands) {
      if (c.ep == e) return &c;
    }
    return nullptr;
  }
  Candidate* add(PeerState& p, const wg::Endpoint& e, bool published);
  PeerPathView view(const PeerState& p) const;

  Clock& clock_;
  PathTiming t_;
  Io io_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Timer> timer_;
  PathPolicy policy_;
  OnPathChange on_change_;
  ProbeStats stats_;
  wg::Secret private_;
  wg::PublicKey public_{};
  bool has_key_ = false;
  std::vector<wg::Endpoint> own_;
  std::map<wg::PublicKey, PeerState> peers_;
};

Candidate* PeerPaths::Impl::add(PeerState& p, const wg::Endpoint& e, bool published) {
  if (!e.valid()) return nullptr;
  if (Candidate* c = find(p, e)) {
    c->published = c->published || published;
    c->last_seen = clock_.now();
    return c;
  }
  if (p.cands.size() >= kMaxCandidates) {
    // The least recently seen learned candidate makes room; published ones stay.
    auto victim = p.cands.end();
    for (auto it = p.cands.begin(); it != p.cands.end(); ++it) {
      if (it->published || it->ep == p.best) continue;
      if (victim == p.cands.end() || it->last_seen < victim->last_seen) victim = it;
    }
    if (victim == p.cands.end()) return nullptr;
    p.cands.erase(victim);
  }
  Candidate c;
  c.ep = e;
  c.published = published;
  c.last_seen = clock_.now();
  p.cands.push_back(c);
  return &p.cands.back();
}

void PeerPaths::Impl::sendPing(PeerState& p, const wg::Endpoint& to, bool heartbeat,
                               std::function<void(std::optional<Pong>)> done) {
  if (p.pending.size() >= kMaxPending) {
    drop(ProbeDrop::kPendingFull);
    if (done) done(std::nullopt);
    return;
  }
  probe::Message m;
  m.type = probe::Type::kPing;
  m.txid = probe::newTxId();
  auto now = clock_.now();
  p.pending[m.txid] = Pending{to, now, heartbeat, std::move(done)};
  if (Candidate* c = find(p, to)) c->last_ping = now;
  ++stats_.pings_sent;
  sendMessage(p, to, m);
}

void PeerPaths::Impl::startBurst(PeerState& p, bool call_me_maybe) {
  auto now = clock_.now();
  p.burst_until = now + t_.burst_length;
  pingAll(p);
  p.next_burst_ping = now + t_.burst_interval;
  p.next_discovery = now + (active(p, now) ? t_.rediscover_active : t_.rediscover_idle);
  if (call_me_maybe && policy_.relay && io_.relay_endpoint) {
    probe::Message m;
    m.type = probe::Type::kCallMeMaybe;
    m.txid = probe::newTxId();
    m.endpoints = own_;
    if (m.endpoints.size() > probe::kMaxCallMeMaybe) m.endpoints.resize(probe::kMaxCallMeMaybe);
    ++stats_.call_me_maybe_sent;
    sendMessage(p, io_.relay_endpoint(p.key), m);
  }
}

void PeerPaths::Impl::setPath(PeerState& p, Path path, const wg::Endpoint& ep, Duration latency) {
  auto now = clock_.now();
  Path old = p.path;
  bool changed = old != path || (path == Path::kDirect && p.best != ep);
  p.path = path;
  if (path == Path::kDirect) {
    p.best = ep;
    p.best_latency = latency;
    p.next_heartbeat = now + (active(p, now) ? t_.heartbeat_active : t_.heartbeat_idle);
    p.next_upgrade = now + t_.upgrade_interval;
    p.burst_until = now;  // found: the burst ends (upgrades are checked every upgrade_interval)
  } else {
    p.best = {};
  }
  if (io_.set_endpoint) {
    if (path == Path::kRelay) {
      io_.set_endpoint(p.key, io_.relay_endpoint(p.key));
    } else if (path == Path::kDirect) {
      io_.set_endpoint(p.key, ep);
    }
  }
  if (!changed) return;
  if (io_.path_changed) io_.path_changed(p.key, path);
  if (old != Path::kNone) ++stats_.path_changes;
  if (path == Path::kDirect) ++stats_.to_direct;
  if (path == Path::kRelay) ++stats_.to_relay;
  std::string who = wg::toBase64(p.key).substr(0, 8);
  if (path == Path::kDirect) {
    log_->info("peer {}: direct path {} ({:.1f} ms)", who, ep.toString(), toMs(latency));
  } else {
    log_->info("peer {}: path {}", who, pathName(path));
  }
  if (on_change_) on_change_(p.key, view(p));
}

void PeerPaths::Impl::fallBack(PeerState& p) {
  // Another candidate that answered within the timeout takes over; else the relay.
  auto now = clock_.now();
  const Candidate* next = nullptr;
  for (const auto& c : p.cands) {
    if (c.ep == p.best || !c.last_pong || now - *c.last_pong >= t_.ping_timeout) continue;
    if (next == nullptr || c.latency < next->latency) next = &c;
  }
  if (next != nullptr) {
    setPath(p, Path::kDirect, next->ep, next->latency);
    return;
  }
  if (policy_.relay) {
    setPath(p, Path::kRelay, {}, {});
  } else {
    p.path = Path::kNone;  // keep the endpoint: nothing better exists
  }
  startBurst(p, true);
}

void PeerPaths::Impl::expire(PeerState& p, MonoTime now) {
  std::vector<std::function<void(std::optional<Pong>)>> timed_out;
  bool direct_failed = false;
  for (auto it = p.pending.begin(); it != p.pending.end();) {
    if (now - it->second.sent < t_.ping_timeout) {
      ++it;
      continue;
    }
    if (it->second.done) timed_out.push_back(std::move(it->second.done));
    if (it->second.heartbeat && p.path == Path::kDirect && it->second.to == p.best) {
      const Candidate* c = find(p, p.best);
      if (c == nullptr || !c->last_pong || *c->last_pong < it->second.sent) direct_failed = true;
    }
    it = p.pending.erase(it);
  }
  if (direct_failed) {
    log_->info("peer {}: direct path {} stopped answering", wg::toBase64(p.key).substr(0, 8),
               p.best.toString());
    fallBack(p);
  }
  for (auto& f : timed_out) f(std::nullopt);
}

void PeerPaths::Impl::tick() {
  auto now = clock_.now();
  for (auto it = peers_.begin(); it != peers_.end();) {
    // A callback (a ping's done) may remove the peer: step first.
    PeerState& p = it->second;
    ++it;
    uint64_t traffic = io_.traffic ? io_.traffic(p.key) : 0;
    if (traffic != p.last_traffic) {
      p.last_traffic = traffic;
      p.last_active = now;
    }
    bool act = active(p, now);
    if (act && !p.was_active) {
      // Traffic after a quiet spell: check the path now.
      p.next_heartbeat = now;
      p.next_discovery = std::min(p.next_discovery, now);
    }
    p.was_active = act;
    expire(p, now);
    if (!policy_.direct) continue;
    if (now < p.burst_until && now >= p.next_burst_ping) {
      pingAll(p);
      p.next_burst_ping = now + t_.burst_interval;
    }
    if (p.path != Path::kDirect) {
      if (now >= p.next_discovery) startBurst(p, true);
    } else {
      if (now >= p.next_heartbeat) {
        sendPing(p, p.best, true);
        p.next_heartbeat = now + (act ? t_.heartbeat_active : t_.heartbeat_idle);
      }
      if (act && now >= p.next_upgrade) {
        pingAll(p);
        p.next_upgrade = now + t_.upgrade_interval;
      }
    }
  }
  arm();
}

PeerPathView PeerPaths::Impl::view(const PeerState& p) const {
  auto now = clock_.now();
  PeerPathView v;
  v.key = p.key;
  v.path = p.path;
  v.active = active(p, now);
  if (p.path == Path::kDirect) {
    v.endpoint = p.best;
    v.latency_ms = toMs(p.best_latency);
  }
  for (const auto& c : p.cands) {
    PeerPathView::Candidate vc;
    vc.endpoint = c.ep;
    vc.published = c.published;
    if (c.last_pong) {
      vc.latency_ms = toMs(c.latency);
      vc.since_pong = now - *c.last_pong;
    }
    v.candidates.push_back(vc);
  }
  return v;
}

PeerPaths::PeerPaths(Clock& clock, PathTiming timing, Io io, std::string logger)
    : impl_(std::make_unique<Impl>(clock, timing, std::move(io), logger)) {}

PeerPaths::~PeerPaths() = default;

void PeerPaths::setKey(const wg::Secret& private_key) {
  impl_->private_ = private_key;
  impl_->public_ = wg::publicKeyOf(private_key);
  impl_->has_key_ = true;
  for (auto& [key, p] : impl_->peers_) p.shared = probe::sharedKey(private_key, key);
}

void PeerPaths::setPolicy(PathPolicy policy) {
  impl_->policy_ = policy;
  if (policy.direct) return;
  for (auto& [key, p] : impl_->peers_) {
    p.pending.clear();
    p.burst_until = {};
    if (policy.relay && p.path != Path::kRelay) impl_->setPath(p, Path::kRelay, {}, {});
  }
}

const PathPolicy& PeerPaths::policy() const {
  return impl_->policy_;
}

void PeerPaths::setOwnCandidates(std::vector<wg::Endpoint> candidates) {
  impl_->own_ = std::move(candidates);
}

void PeerPaths::setOnPathChange(OnPathChange f) {
  impl_->on_change_ = std::move(f);
}

const ProbeStats& PeerPaths::stats() const {
  return impl_->stats_;
}

void PeerPaths::upsertPeer(const wg::PublicKey& key, const std::vector<wg::Endpoint>& candidates) {
  auto [it, inserted] = impl_->peers_.try_emplace(key);
  PeerState& p = it->second;
  bool fresh = false;
  if (inserted) {
    p.key = key;
    if (impl_->has_key_) p.shared = probe::sharedKey(impl_->private_, key);
    if (impl_->io_.traffic) p.last_traffic = impl_->io_.traffic(key);
  }
  for (auto& c : p.cands) c.published = false;
  for (const auto& e : candidates) {
    if (impl_->find(p, e) == nullptr) fresh = true;
    impl_->add(p, e, true);
  }
  if (inserted) {
    if (impl_->policy_.relay) {
      impl_->setPath(p, Path::kRelay, {}, {});
    } else if (!p.cands.empty() && impl_->io_.set_endpoint) {
      impl_->io_.set_endpoint(key, p.cands.front().ep);  // unconfirmed, until a pong says
    }
  }
  if (impl_->policy_.direct && (inserted || fresh)) impl_->startBurst(p, true);
  impl_->arm();
}

void PeerPaths::removePeer(const wg::PublicKey& key) {
  auto it = impl_->peers_.find(key);
  if (it == impl_->peers_.end()) return;
  std::vector<std::function<void(std::optional<Pong>)>> waiting;
  for (auto& [tx, pd] : it->second.pending) {
    if (pd.done) waiting.push_back(std::move(pd.done));
  }
  impl_->peers_.erase(it);
  for (auto& f : waiting) f(std::nullopt);
}

bool PeerPaths::has(const wg::PublicKey& key) const {
  return impl_->peers_.count(key) != 0;
}

void PeerPaths::receive(const wg::Endpoint& from, std::span<const uint8_t> datagram) {
  Impl& m = *impl_;
  auto sender = probe::senderOf(datagram);
  if (!sender) return m.drop(ProbeDrop::kMalformed);
  bool via_relay = wg::RelayEndpoints::isRelay(from);
  if (!m.policy_.direct && !via_relay) return m.drop(ProbeDrop::kDisabled);
  auto it = m.peers_.find(*sender);
  if (it == m.peers_.end()) return m.drop(ProbeDrop::kUnknownSender);
  PeerState& p = it->second;
  if (!p.shared) return m.drop(ProbeDrop::kBadAuth);
  auto msg = probe::open(datagram, *p.shared);
  if (!msg) return m.drop(ProbeDrop::kBadAuth);
  // Through the relay, the relay's sender must be the probe's.
  if (via_relay && m.io_.relay_endpoint && !(m.io_.relay_endpoint(*sender) == from)) {
    return m.drop(ProbeDrop::kBadAuth);
  }
  auto now = m.clock_.now();
  switch (msg->type) {
    case probe::Type::kPing: {
      ++m.stats_.pings_received;
      probe::Message pong;
      pong.type = probe::Type::kPong;
      pong.txid = msg->txid;
      pong.observed = from;
      ++m.stats_.pongs_sent;
      m.sendMessage(p, from, pong);
      if (via_relay || !m.policy_.direct) return;
      // Its source is a way to the peer: a candidate, pinged back unless the path is direct.
      // A ping getting through means the way may have just opened (the peer's NAT now has a
      // mapping for us): ping back at once, whatever our own schedule — at most once per 50 ms
      // per endpoint, so two peers answering each other's pings cannot storm.
      Candidate* c = m.add(p, from, false);
      if (c != nullptr && p.path != Path::kDirect &&
          (!c->last_ping_back || now - *c->last_ping_back >= std::chrono::milliseconds(50))) {
        c->last_ping_back = now;
        m.sendPing(p, from, false);
      }
      return;
    }
    case probe::Type::kPong: {
      ++m.stats_.pongs_received;
      auto pit = p.pending.find(msg->txid);
      if (pit == p.pending.end()) return m.drop(ProbeDrop::kUnmatchedPong);
      Pending pd = std::move(pit->second);
      p.pending.erase(pit);
      Duration latency = now - pd.sent;
      if (via_relay) {
        if (pd.done) pd.done(Pong{Path::kRelay, {}, toMs(latency)});
        return;
      }
      // The source confirms itself (it may be a port nobody published: a remapped one).
      Candidate* c = m.add(p, from, false);
      if (c != nullptr) {
        c->last_pong = now;
        c->latency = latency;
        if (m.policy_.direct) {
          if (p.path != Path::kDirect) {
            m.setPath(p, Path::kDirect, from, latency);
          } else if (p.best == from) {
            p.best_latency = latency;
          } else if (toMs(latency) < m.t_.better_ratio * toMs(p.best_latency) &&
                     toMs(p.best_latency) - toMs(latency) >= m.t_.better_margin_ms) {
            m.setPath(p, Path::kDirect, from, latency);
          }
        }
      }
      if (pd.done) pd.done(Pong{Path::kDirect, from, toMs(latency)});
      return;
    }
    case probe::Type::kCallMeMaybe: {
      ++m.stats_.call_me_maybe_received;
      if (!m.policy_.direct) return;
      for (const auto& e : msg->endpoints) m.add(p, e, true);
      m.startBurst(p, false);
      return;
    }
  }
}

void PeerPaths::ping(const wg::PublicKey& key, std::function<void(std::optional<Pong>)> done) {
  auto it = impl_->peers_.find(key);
  if (it == impl_->peers_.end()) return done(std::nullopt);
  PeerState& p = it->second;
  if (p.path == Path::kDirect) return impl_->sendPing(p, p.best, false, std::move(done));
  if (impl_->policy_.relay && impl_->io_.relay_endpoint) {
    return impl_->sendPing(p, impl_->io_.relay_endpoint(key), false, std::move(done));
  }
  if (!p.cands.empty()) return impl_->sendPing(p, p.cands.front().ep, false, std::move(done));
  done(std::nullopt);
}

std::optional<PeerPathView> PeerPaths::peer(const wg::PublicKey& key) const {
  auto it = impl_->peers_.find(key);
  if (it == impl_->peers_.end()) return std::nullopt;
  return impl_->view(it->second);
}

std::vector<PeerPathView> PeerPaths::peers() const {
  std::vector<PeerPathView> out;
  for (const auto& [key, p] : impl_->peers_) out.push_back(impl_->view(p));
  return out;
}

}  // namespace wsa::overlay
