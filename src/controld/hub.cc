#include "controld/hub.h"

#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "wsa/common/metrics.h"
#include "wsa/common/uuid.h"

namespace wsa::controld {

namespace ov = wsa::overlay::v1;
using PeerUpdate = ov::CoordinateResponse::PeerUpdate;

namespace {
constexpr size_t kMaxEndpoints = 32;
constexpr size_t kWireGuardKeyBytes = 32;
constexpr size_t kMaxIssuedClients = 4096;
}  // namespace

Hub::Hub(std::vector<AgentIdentity> agents, Callbacks callbacks, TicketIssuing tickets)
    : callbacks_(std::move(callbacks)), issuing_(std::move(tickets)) {
  for (auto& a : agents) agents_[a.id] = std::move(a);
  if (!issuing_.now_unix_ms) {
    issuing_.now_unix_ms = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

int64_t Hub::nowMs() const {
  return issuing_.now_unix_ms();
}

bool Hub::openStream(StreamHandle* stream) {
  std::lock_guard lock(mu_);
  if (shut_down_) return false;
  open_.insert(stream);
  return true;
}

void Hub::streamDone(StreamHandle* stream) {
  std::lock_guard lock(mu_);
  open_.erase(stream);
}

size_t Hub::openStreamCount() const {
  std::lock_guard lock(mu_);
  return open_.size();
}

void Hub::closeAll(const CloseList& list) {
  for (const auto& [stream, reason] : list) stream->closeStream(reason);
}

bool Hub::addEventStream(const std::string& agent_id, EventSink* sink) {
  bool first = false;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return false;
    auto& set = events_[agent_id];
    first = set.empty();
    set.insert(sink);
  }
  if (first && callbacks_.on_agent_connection) callbacks_.on_agent_connection(agent_id, true);
  return true;
}

void Hub::removeEventStream(const std::string& agent_id, EventSink* sink) {
  bool last = false;
  {
    std::lock_guard lock(mu_);
    auto it = events_.find(agent_id);
    if (it == events_.end() || it->second.erase(sink) == 0) return;
    if (it->second.empty()) {
      events_.erase(it);
      last = true;
    }
  }
  if (last && callbacks_.on_agent_connection) callbacks_.on_agent_connection(agent_id, false);
}

size_t Hub::broadcastEvent(const agent::v1::ServerEvent& event) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (auto& [id, sinks] : events_) {
    for (auto* s : sinks) n += s->pushEvent(event) ? 1 : 0;
  }
  return n;
}

size_t Hub::sendEvent(const std::string& agent_id, const agent::v1::ServerEvent& event) {
  std::lock_guard lock(mu_);
  auto it = events_.find(agent_id);
  if (it == events_.end()) return 0;
  size_t n = 0;
  for (auto* s : it->second) n += s->pushEvent(event) ? 1 : 0;
  return n;
}

bool Hub::agentConnected(const std::string& agent_id) const {
  std::lock_guard lock(mu_);
  return events_.count(agent_id) > 0 || peers_.count(agent_id) > 0;
}

const AgentIdentity* Hub::findAgentByName(const std::string& name) const {
  std::lock_guard lock(mu_);
  for (const auto& [id, a] : agents_) {
    if (a.name == name) return &a;  // agents_ is never modified after construction
  }
  return nullptr;
}

bool Hub::userMayReach(const AgentIdentity& agent, const std::string& user) {
  return agent.allowed_users.count(user) > 0;
}

Hub::ClientIdentity Hub::issueClient(const std::string& user) {
  std::lock_guard lock(mu_);
  ClientIdentity c;
  c.id = newUuid();
  auto b = *parseUuid(c.id);
  char v6[64];
  std::snprintf(v6, sizeof(v6), "fd7a:115c:a1e0:c:%02x%02x:%02x%02x:%02x%02x:%02x%02x/128", b[8],
                b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  // IPv4 for clients: 100.96.0.0/11, never .0/.255, unique among issued identities.
  uint32_t h = (uint32_t(b[0]) << 16) | (uint32_t(b[1]) << 8) | b[2];
  std::string v4;
  for (uint32_t probe = 0; probe < (1u << 21); ++probe) {
    uint32_t host = (h + probe) & 0x1fffff;
    if ((host & 0xff) == 0 || (host & 0xff) == 0xff) continue;
    uint32_t addr = (100u << 24) | (96u << 16) | host;
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u/32", addr >> 24, (addr >> 16) & 0xff,
                  (addr >> 8) & 0xff, addr & 0xff);
    if (used_client_v4_.insert(buf).second) {
      v4 = buf;
      break;
    }
  }
  c.addresses = {v4, v6};
  clients_[c.id] = c;
  client_users_[c.id] = user;
  client_order_.push_back(c.id);
  // Identities that never coordinate must not pile up: past the cap, forget the oldest ones
  // that are not in use.
  while (clients_.size() > kMaxIssuedClients && !client_order_.empty()) {
    std::string old = client_order_.front();
    client_order_.pop_front();
    if (peers_.count(old) > 0) {
      client_order_.push_back(old);
      if (client_order_.front() == c.id) break;
      continue;
    }
    auto it = clients_.find(old);
    if (it == clients_.end()) continue;
    if (!it->second.addresses.empty()) used_client_v4_.erase(it->second.addresses.front());
    clients_.erase(it);
    client_users_.erase(old);
  }
  return c;
}

void Hub::sendErrorLocked(CoordinationSink* sink, const std::string& error) {
  ov::CoordinateResponse r;
  r.set_error(error);
  sink->pushCoordination(r);
}

void Hub::sendNodeLocked(const Peer& to, const Peer& about) {
  if (to.sink == nullptr || !about.node) return;
  ov::CoordinateResponse r;
  auto* u = r.add_peer_updates();
  u->set_id(about.id);
  u->set_kind(PeerUpdate::KIND_NODE);
  *u->mutable_node() = *about.node;
  to.sink->pushCoordination(r);
}

void Hub::sendGoneLocked(const std::string& to_id, const std::string& about_id, bool graceful,
                         const std::string& reason) {
  auto it = peers_.find(to_id);
  if (it == peers_.end() || it->second.sink == nullptr) return;
  ov::CoordinateResponse r;
  auto* u = r.add_peer_updates();
  u->set_id(about_id);
  u->set_kind(graceful ? PeerUpdate::KIND_DISCONNECTED : PeerUpdate::KIND_LOST);
  u->set_reason(reason);
  it->second.sink->pushCoordination(r);
}

bool Hub::tunnelLocked(const std::string& a, const std::string& b) const {
  return tunnels_.count({a, b}) > 0 || tunnels_.count({b, a}) > 0;
}

std::set<std::string> Hub::counterpartsLocked(const std::string& peer_id) const {
  std::set<std::string> out;
  for (const auto& [client, agent] : tunnels_) {
    if (client == peer_id) out.insert(agent);
    if (agent == peer_id) out.insert(client);
  }
  return out;
}

Hub::Peer* Hub::peerBySinkLocked(CoordinationSink* sink) {
  auto it = sink_peer_.find(sink);
  if (it == sink_peer_.end()) return nullptr;
  auto p = peers_.find(it->second);
  return p == peers_.end() ? nullptr : &p->second;
}

void Hub::coordinate(CoordinationSink* sink, const Principal& who,
                     const ov::CoordinateRequest& req) {
  CloseList to_close;
  {
    std::lock_guard lock(mu_);
    std::set<std::string> tickets;
    coordinateLocked(sink, who, req, &to_close, &tickets);
    // Once per request, after all of it applied (a node and a tunnel in one request: one
    // ticket each, not two).
    issueTicketsLocked(tickets);
  }
  closeAll(to_close);
}

void Hub::coordinateLocked(CoordinationSink* sink, const Principal& who,
                           const ov::CoordinateRequest& req, CloseList* to_close,
                           std::set<std::string>* tickets) {
  if (shut_down_) return;
  Peer* self = peerBySinkLocked(sink);

  if (req.has_update_self()) {
    const ov::Node& in = req.update_self().node();
    if (in.key().size() != kWireGuardKeyBytes) {
      sendErrorLocked(sink, "update_self: node key must be a 32-byte WireGuard public key");
      return;
    }
    if (static_cast<size_t>(in.endpoints_size()) > kMaxEndpoints) {
      sendErrorLocked(sink, "update_self: more than 32 endpoints");
      return;
    }
    if (self == nullptr) {
      // Bind this stream to a peer identity.
      Peer p;
      p.who = who;
      p.sink = sink;
      if (who.isAgent()) {
        p.id = who.agent_id;
        p.is_agent = true;
        auto a = agents_.find(p.id);
        if (a != agents_.end()) p.addresses = a->second.addresses;
      } else {
        auto c = clients_.find(in.id());
        if (c == clients_.end() || client_users_[in.id()] != who.name) {
          sendErrorLocked(sink, "update_self: unknown client id \"" + in.id() +
                                    "\"; call LookupAgent first and use the client_id it returns");
          return;
        }
        p.id = in.id();
        p.addresses = c->second.addresses;
      }
      auto existing = peers_.find(p.id);
      if (existing != peers_.end() && existing->second.sink != nullptr &&
          existing->second.sink != sink) {
        // A newer connection of the same peer replaces the old one.
        CoordinationSink* old = existing->second.sink;
        sink_peer_.erase(old);
        to_close->emplace_back(old->shared_from_this(), "replaced by a newer coordination stream");
      }
      sink_peer_[sink] = p.id;
      std::string id = p.id;
      peers_[id] = std::move(p);
      self = &peers_[id];
    }
    ov::Node node = in;
    node.set_id(self->id);
    node.clear_addresses();
    node.clear_allowed_ips();
    for (const auto& a : self->addresses) {
      node.add_addresses(a);
      node.add_allowed_ips(a);
    }
    if (!node.has_as_of()) {
      *node.mutable_as_of() = google::protobuf::util::TimeUtil::GetCurrentTime();
    }
    self->node = node;
    for (const auto& other : counterpartsLocked(self->id)) {
      auto it = peers_.find(other);
      if (it != peers_.end()) sendNodeLocked(it->second, *self);
    }
    // A (re)connecting peer learns the nodes of everyone it has a tunnel with.
    for (const auto& other : counterpartsLocked(self->id)) {
      auto it = peers_.find(other);
      if (it != peers_.end()) sendNodeLocked(*self, it->second);
    }
    // Its ticket names its (maybe new) key; its counterparts' tickets name that key too.
    tickets->merge(counterpartsLocked(self->id));
    tickets->insert(self->id);
  }

  if (self == nullptr && (req.has_add_tunnel() || req.has_remove_tunnel() ||
                          req.ready_for_handshake_size() > 0 || req.has_disconnect())) {
    sendErrorLocked(sink, "send update_self with your node before other requests");
    return;
  }

  if (req.has_disconnect()) self->graceful = true;

  if (req.has_add_tunnel()) {
    const std::string& agent_id = req.add_tunnel().id();
    auto a = agents_.find(agent_id);
    if (self->is_agent) {
      sendErrorLocked(sink, "add_tunnel: agents do not open tunnels");
    } else if (a == agents_.end()) {
      sendErrorLocked(sink, "add_tunnel: no agent with id \"" + agent_id + "\"");
    } else if (!userMayReach(a->second, self->who.name)) {
      sendErrorLocked(sink, "add_tunnel: user \"" + self->who.name + "\" may not reach agent \"" +
                                a->second.name + "\"");
    } else if (tunnels_.insert({self->id, agent_id}).second) {
      auto ap = peers_.find(agent_id);
      if (ap != peers_.end()) {
        sendNodeLocked(*self, ap->second);
        sendNodeLocked(ap->second, *self);
      }
      tickets->insert({self->id, agent_id});
    }
  }

  if (req.has_remove_tunnel()) {
    const std::string& agent_id = req.remove_tunnel().id();
    if (tunnels_.erase({self->id, agent_id}) > 0) {
      sendGoneLocked(agent_id, self->id, true, "tunnel removed");
      tickets->insert({self->id, agent_id});
    }
  }

  for (const auto& rfh : req.ready_for_handshake()) {
    if (!tunnelLocked(self->id, rfh.id())) {
      sendErrorLocked(sink, "ready_for_handshake: no tunnel with peer \"" + rfh.id() + "\"");
      continue;
    }
    auto it = peers_.find(rfh.id());
    if (it == peers_.end() || it->second.sink == nullptr) continue;
    ov::CoordinateResponse r;
    auto* u = r.add_peer_updates();
    u->set_id(self->id);
    u->set_kind(PeerUpdate::KIND_READY_FOR_HANDSHAKE);
    it->second.sink->pushCoordination(r);
  }
}

void Hub::coordinationEnded(CoordinationSink* sink) {
  CloseList to_close;
  {
    std::lock_guard lock(mu_);
    coordinationEndedLocked(sink, &to_close);
  }
  closeAll(to_close);
}

void Hub::coordinationEndedLocked(CoordinationSink* sink, CloseList* to_close) {
  auto it = sink_peer_.find(sink);
  if (it == sink_peer_.end()) return;
  std::string id = it->second;
  sink_peer_.erase(it);
  auto p = peers_.find(id);
  if (p == peers_.end()) return;
  bool graceful = p->second.graceful;
  bool is_agent = p->second.is_agent;
  std::string reason = graceful ? "peer disconnected" : "peer connection lost";
  auto counterparts = counterpartsLocked(id);
  for (const auto& other : counterparts) sendGoneLocked(other, id, graceful, reason);
  // Relay registrations of this peer's key end with it.
  if (p->second.node) {
    if (RelaySink* rs = router_.unbindKey(p->second.node->key())) {
      to_close->emplace_back(rs->shared_from_this(), "coordination stream ended");
    }
  }
  peers_.erase(p);
  // Its key leaves the tickets of the peers that could reach it.
  issueTicketsLocked(counterparts);
  if (!is_agent) {
    // A client's tunnels and identity end with its stream; an agent's tunnels persist so
    // clients reconnect to it when it comes back.
    for (auto t = tunnels_.begin(); t != tunnels_.end();) {
      t = t->first == id ? tunnels_.erase(t) : std::next(t);
    }
    auto c = clients_.find(id);
    if (c != clients_.end()) {
      if (!c->second.addresses.empty()) used_client_v4_.erase(c->second.addresses.front());
      clients_.erase(c);
    }
    client_users_.erase(id);
  }
}

std::string Hub::addRelay(RelaySink* sink, const Principal& who, const std::string& key) {
  CloseList to_close;
  std::string error;
  {
    std::lock_guard lock(mu_);
    error = addRelayLocked(sink, who, key, &to_close);
  }
  closeAll(to_close);
  return error;
}

std::string Hub::addRelayLocked(RelaySink* sink, const Principal& who, const std::string& key,
                                CloseList* to_close) {
  if (shut_down_) return "server is shutting down";
  if (key.size() != kWireGuardKeyBytes) return "hello_key must be a 32-byte WireGuard public key";
  for (const auto& [id, peer] : peers_) {
    if (!peer.node || peer.node->key() != key) continue;
    if (peer.who.kind != who.kind || peer.who.name != who.name) break;
    if (RelaySink* old = router_.bind(sink, key, id)) {
      to_close->emplace_back(old->shared_from_this(), "replaced by a newer relay stream");
    }
    return "";
  }
  return "hello_key was not published by this caller through Coordinate";
}

void Hub::removeRelay(RelaySink* sink) {
  std::lock_guard lock(mu_);
  router_.unbind(sink);
}

void Hub::relay(RelaySink* from, const std::string& dest_key, const std::string& payload) {
  std::lock_guard lock(mu_);
  // Only peers with a tunnel between them may exchange packets, and only under the keys they
  // publish now (a peer that changed its key must bind again). Lookups are by id: O(log n).
  auto publishes = [this](const RelayRouter::Binding& b) {
    auto p = peers_.find(b.owner);
    return p != peers_.end() && p->second.node && p->second.node->key() == b.key;
  };
  router_.route(from, dest_key, payload,
                [&](const RelayRouter::Binding& src, const RelayRouter::Binding& dst) {
                  return publishes(src) && publishes(dst) && tunnelLocked(src.owner, dst.owner);
                });
}

bool Hub::issueTicketLocked(Peer& p, bool force) {
  if (issuing_.signer == nullptr || !p.node || p.sink == nullptr) return false;
  std::set<std::string> may_reach;
  for (const auto& other : counterpartsLocked(p.id)) {
    auto it = peers_.find(other);
    if (it != peers_.end() && it->second.node) may_reach.insert(it->second.node->key());
  }
  int64_t now = nowMs();
  const std::string& key = p.node->key();
  if (!force && p.ticket && p.ticket->key == key && p.ticket->may_reach == may_reach &&
      now - p.ticket->issued_unix_ms < issuing_.lifetime_ms / 2) {
    return false;
  }
  // Serials increase across restarts too: they start from the clock.
  ticket_serial_ = std::max<uint64_t>(ticket_serial_ + 1, static_cast<uint64_t>(now));
  ov::RelayTicketBody body;
  body.set_key(key);
  for (const auto& k : may_reach) body.add_may_reach(k);
  body.set_not_after_unix_ms(now + issuing_.lifetime_ms);
  body.set_serial(ticket_serial_);
  ov::CoordinateResponse r;
  *r.mutable_relay_ticket() = issuing_.signer->sign(body);
  p.ticket = Peer::Ticket{key, std::move(may_reach), now};
  ++tickets_issued_;
  p.sink->pushCoordination(r);
  return true;
}

void Hub::issueTicketsLocked(const std::set<std::string>& peer_ids) {
  for (const auto& id : peer_ids) {
    auto it = peers_.find(id);
    if (it != peers_.end()) issueTicketLocked(it->second);
  }
}

size_t Hub::refreshTickets() {
  std::lock_guard lock(mu_);
  if (shut_down_) return 0;
  size_t n = 0;
  for (auto& [id, p] : peers_) n += issueTicketLocked(p) ? 1 : 0;
  return n;
}

uint64_t Hub::ticketsIssued() const {
  std::lock_guard lock(mu_);
  return tickets_issued_;
}

HubCounters Hub::counters() const {
  std::lock_guard lock(mu_);
  return router_.counters();
}

void Hub::collectMetrics(metrics::Families& out) const {
  std::lock_guard lock(mu_);
  router_.collect(out);
  out.counter("wsa_controld_relay_tickets_issued_total", "Relay tickets sent to coordinating peers",
              tickets_issued_);
  out.gauge("wsa_controld_connected_agents", "Agents with an open event stream", events_.size());
}

void Hub::shutdown(const std::string& reason) {
  CloseList to_close;
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    for (auto* s : open_) to_close.emplace_back(s->shared_from_this(), reason);
  }
  closeAll(to_close);
}

}  // namespace wsa::controld
