// overlay::Coordinator over a fake transport, with a real Engine (userspace stack, UDP on
// loopback) and a ManualClock: what it publishes, how peer updates reach the device, routes,
// ready_for_handshake, the relay stream's reopening with backoff, and sessions. Also the
// Engine's metric families (exactly the names the agent has always exported).

#include "wsa/overlay/coordinator.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <set>

#include "wsa/overlay/engine.h"
#include "wsa/overlay/node.h"
#include "wsa/overlay/v1/coordinate.pb.h"
#include "wsa/wg/relay_endpoints.h"

namespace wsa::overlay {
namespace {

using namespace std::chrono_literals;
namespace ov = overlay::v1;
using Update = ov::CoordinateResponse_PeerUpdate;

class FakeCoordinate final : public control::CoordinateStream {
 public:
  void send(const ov::CoordinateRequest& r) override { sent.push_back(r); }
  void cancel() override { cancelled = true; }
  std::vector<ov::CoordinateRequest> sent;
  bool cancelled = false;
};

class FakeRelay final : public control::RelayStream {
 public:
  bool send(const Key&, std::span<const uint8_t>) override {
    ++stats_.packets_sent;
    return true;
  }
  void setTicket(const std::string& t) override { tickets.push_back(t); }
  void cancel() override { cancelled = true; }
  bool ready() const override { return ready_; }
  std::vector<std::string> tickets;
  control::RelayStreamStats stats() const override { return stats_; }
  bool ready_ = false;
  bool cancelled = false;
  control::RelayStreamStats stats_;
};

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions eo;
    eo.addresses = {"100.64.0.1/32", "fd7a:115c:a1e0::1"};
    auto e = Engine::start(io, clock, eo);
    ASSERT_TRUE(e) << e.error();
    engine = std::move(*e);
  }
  void TearDown() override {
    coordinator.reset();
    engine.reset();
    Engine::drainCompletions(io);
  }

  void make(CoordinatorOptions o = {}) {
    CoordinatorHooks h;
    h.on_peer = [this](const PeerEvent& e) {
      events.push_back(
          {e.kind, e.id, e.node ? std::optional(*e.node) : std::nullopt, e.reason, e.error});
    };
    h.on_relay_ready = [this] { ++relay_ready; };
    h.on_relay_ended = [this](int code, const std::string&) { relay_ended.push_back(code); };
    h.on_relay_ticket = [this](const std::string& t) { tickets_heard.push_back(t); };
    if (server_error) h.on_server_error = server_error;
    coordinator = std::make_unique<Coordinator>(*engine, clock, std::move(o), std::move(h));
  }

  CoordinatorTransport transport() {
    CoordinatorTransport t;
    t.coordinate = [this](control::CoordinateStream::Callbacks cb) {
      coord_cb = std::move(cb);
      coord = std::make_shared<FakeCoordinate>();
      return coord;
    };
    t.relay = [this](const control::RelayStream::Key& key, control::RelayStream::Callbacks cb) {
      EXPECT_EQ(key, engine->publicKey());  // the hello names our published key
      relay_cbs.push_back(std::move(cb));
      relays.push_back(std::make_shared<FakeRelay>());
      relay_opened_at.push_back(clock.now());
      return relays.back();
    };
    return t;
  }

  uint64_t startSession(const std::string& id = "me") {
    return coordinator->start(id, transport(), [this](int code, std::string message) {
      done.emplace_back(code, std::move(message));
    });
  }

  static ov::CoordinateResponse nodeUpdate(const std::string& id, const wg::PublicKey& key,
                                           std::vector<std::string> endpoints = {
                                               "127.0.0.1:4242"}) {
    ov::CoordinateResponse r;
    auto* u = r.add_peer_updates();
    u->set_id(id);
    u->set_kind(Update::KIND_NODE);
    describeNode(key, {"100.64.0.9/32", "fd7a:115c:a1e0::9/128"}, endpoints, u->mutable_node());
    return r;
  }
  static ov::CoordinateResponse kindUpdate(const std::string& id, Update::Kind kind,
                                           const std::string& reason = "") {
    ov::CoordinateResponse r;
    auto* u = r.add_peer_updates();
    u->set_id(id);
    u->set_kind(kind);
    u->set_reason(reason);
    return r;
  }
  void respond(const ov::CoordinateResponse& r) { coord_cb.on_response(r); }
  // The relay stream opened last is acknowledged by the server.
  void ackRelay() {
    relays.back()->ready_ = true;
    if (relay_cbs.back().on_ready) relay_cbs.back().on_ready();
  }
  // The ids of the ready_for_handshake requests sent so far.
  std::vector<std::string> readySent() const {
    std::vector<std::string> ids;
    for (const auto& r : coord->sent) {
      for (const auto& x : r.ready_for_handshake()) ids.push_back(x.id());
    }
    return ids;
  }
  double metric(const std::string& name, const std::string& reason = "") const {
    for (const auto& f : engine->collectMetrics()) {
      if (f.name != name) continue;
      for (const auto& m : f.metric) {
        bool match = reason.empty();
        for (const auto& l : m.label) match = match || (l.name == "reason" && l.value == reason);
        if (!match) continue;
        return f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
    }
    ADD_FAILURE() << "no metric " << name;
    return -1;
  }

  struct Event {
    PeerEvent::Kind kind;
    std::string id;
    std::optional<wg::PeerConfig> node;
    std::string reason, error;
  };

  asio::io_context io;
  ManualClock clock;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Coordinator> coordinator;
  std::function<bool(const std::string&)> server_error;
  control::CoordinateStream::Callbacks coord_cb;
  std::shared_ptr<FakeCoordinate> coord;
  std::vector<control::RelayStream::Callbacks> relay_cbs;
  std::vector<std::shared_ptr<FakeRelay>> relays;
  std::vector<MonoTime> relay_opened_at;
  std::vector<Event> events;
  std::vector<std::pair<int, std::string>> done;
  int relay_ready = 0;
  std::vector<int> relay_ended;
  std::vector<std::string> tickets_heard;
  const wg::PublicKey key1 = wg::publicKeyOf(wg::generatePrivateKey());
  const wg::PublicKey key2 = wg::publicKeyOf(wg::generatePrivateKey());
};

TEST_F(CoordinatorTest, PublishesItsNodeWithEndpointsOnTheEnginesPort) {
  CoordinatorOptions o;
  o.endpoints = {"127.0.0.1", "198.18.0.1:777"};
  make(o);
  ASSERT_NE(startSession("agent-1"), 0u);
  ASSERT_EQ(coord->sent.size(), 1u);
  const auto& n = coord->sent[0].update_self().node();
  EXPECT_EQ(n.id(), "agent-1");
  EXPECT_EQ(n.key(), std::string(engine->publicKey().begin(), engine->publicKey().end()));
  EXPECT_EQ(std::vector<std::string>(n.addresses().begin(), n.addresses().end()),
            (std::vector<std::string>{"100.64.0.1/32", "fd7a:115c:a1e0::1/128"}));
  EXPECT_EQ(std::vector<std::string>(n.allowed_ips().begin(), n.allowed_ips().end()),
            (std::vector<std::string>{"100.64.0.1/32", "fd7a:115c:a1e0::1/128"}));
  EXPECT_EQ(std::vector<std::string>(n.endpoints().begin(), n.endpoints().end()),
            (std::vector<std::string>{"127.0.0.1:" + std::to_string(engine->udpPort()),
                                      "198.18.0.1:777"}));
  EXPECT_FALSE(coord->sent[0].has_add_tunnel());
  EXPECT_TRUE(coordinator->running());
}

TEST_F(CoordinatorTest, AClientPublishesNoEndpointsAndAsksForItsTunnel) {
  CoordinatorOptions o;
  o.publish_endpoints = false;
  o.add_tunnels = {"agent-1"};
  make(o);
  ASSERT_NE(startSession("client-1"), 0u);
  ASSERT_EQ(coord->sent.size(), 1u);  // node and tunnel in one request
  EXPECT_EQ(coord->sent[0].update_self().node().id(), "client-1");
  EXPECT_EQ(coord->sent[0].update_self().node().endpoints_size(), 0);
  EXPECT_EQ(coord->sent[0].add_tunnel().id(), "agent-1");
}

TEST_F(CoordinatorTest, PeerUpdatesReachTheDevice) {
  make();
  startSession();
  ackRelay();
  respond(nodeUpdate("c1", key1));
  auto st = engine->device().peer(key1);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->endpoint.toString(), "127.0.0.1:4242");
  EXPECT_EQ(st->allowed_ips.size(), 2u);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PeerEvent::Kind::kAdded);
  ASSERT_TRUE(events[0].node);
  EXPECT_EQ(events[0].node->public_key, key1);
  EXPECT_EQ(readySent(), std::vector<std::string>{"c1"});  // a new peer may handshake now

  // The same node again: changed, not added; no second ready_for_handshake.
  respond(nodeUpdate("c1", key1, {"127.0.0.1:4343"}));
  EXPECT_EQ(engine->device().peer(key1)->endpoint.toString(), "127.0.0.1:4343");
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kChanged);
  EXPECT_EQ(readySent(), std::vector<std::string>{"c1"});

  // A new key for the id: the peer restarted; the old key is gone.
  respond(nodeUpdate("c1", key2));
  EXPECT_FALSE(engine->device().peer(key1));
  EXPECT_TRUE(engine->device().peer(key2));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kNewKey);
  EXPECT_EQ(readySent(), (std::vector<std::string>{"c1", "c1"}));
  EXPECT_EQ(coordinator->peerCount(), 1u);

  respond(kindUpdate("c1", Update::KIND_DISCONNECTED, "went away"));
  EXPECT_FALSE(engine->device().peer(key2));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kDeparted);
  EXPECT_EQ(events.back().reason, "went away");
  EXPECT_EQ(coordinator->peerCount(), 0u);

  respond(nodeUpdate("c2", key1));
  respond(kindUpdate("c2", Update::KIND_LOST));
  EXPECT_FALSE(engine->device().peer(key1));
  EXPECT_TRUE(engine->device().peers().empty());
}

TEST_F(CoordinatorTest, ReadyForHandshakeWaitsForTheRelayStream) {
  make();
  startSession();
  // A client's first initiation comes through the relay: until ours is acknowledged the
  // answer would be lost, so the ready_for_handshake is held back...
  respond(nodeUpdate("c1", key1));
  EXPECT_TRUE(readySent().empty());
  // ...and sent once it is.
  ackRelay();
  EXPECT_EQ(readySent(), std::vector<std::string>{"c1"});
  respond(nodeUpdate("c2", key2));
  EXPECT_EQ(readySent(), (std::vector<std::string>{"c1", "c2"}));
}

TEST_F(CoordinatorTest, SeveralNewPeersInOneResponseGetOneReady) {
  make();
  startSession();
  ackRelay();
  auto r = nodeUpdate("c1", key1);
  *r.add_peer_updates() = nodeUpdate("c2", key2).peer_updates(0);
  respond(r);
  ASSERT_EQ(coord->sent.size(), 2u);
  ASSERT_EQ(coord->sent[1].ready_for_handshake_size(), 2);
  EXPECT_EQ(coord->sent[1].ready_for_handshake(0).id(), "c1");
  EXPECT_EQ(coord->sent[1].ready_for_handshake(1).id(), "c2");
}

TEST_F(CoordinatorTest, UnusableNodesAreRejectedAndIgnored) {
  make();
  startSession();
  ov::CoordinateResponse r;
  auto* u = r.add_peer_updates();
  u->set_id("bad");
  u->set_kind(Update::KIND_NODE);
  u->mutable_node()->set_key("short");
  respond(r);
  EXPECT_TRUE(engine->device().peers().empty());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PeerEvent::Kind::kRejected);
  EXPECT_NE(events[0].error.find("5 bytes"), std::string::npos) << events[0].error;
  EXPECT_TRUE(readySent().empty());
  // A departure of an unknown peer is harmless.
  respond(kindUpdate("nobody", Update::KIND_LOST));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kDeparted);
}

TEST_F(CoordinatorTest, TheClientsWayRoutesHoldsAndOnlyItsTunnel) {
  CoordinatorOptions o;
  o.publish_endpoints = false;
  o.add_tunnels = {"agent-1"};
  o.tunnel_peers_only = true;
  o.answer_ready_for_handshake = false;
  o.remove_departed_peers = false;
  o.default_route = Route::kNone;
  make(o);
  startSession("client-1");

  respond(nodeUpdate("stranger", key2));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(coordinator->peerCount(), 0u);

  respond(nodeUpdate("agent-1", key1));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PeerEvent::Kind::kAdded);
  EXPECT_FALSE(engine->device().peer(key1));  // not configured until a route is chosen
  EXPECT_EQ(coord->sent.size(), 1u);          // no ready_for_handshake from a client

  respond(kindUpdate("agent-1", Update::KIND_READY_FOR_HANDSHAKE));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kReadyForHandshake);
  respond(kindUpdate("stranger", Update::KIND_READY_FOR_HANDSHAKE));
  EXPECT_EQ(events.size(), 2u);

  ASSERT_TRUE(coordinator->setRoute("agent-1", Route::kPublished));
  EXPECT_EQ(engine->device().peer(key1)->endpoint.toString(), "127.0.0.1:4242");
  ASSERT_TRUE(coordinator->setRoute("agent-1", Route::kRelay));
  auto ep = engine->device().peer(key1)->endpoint;
  EXPECT_TRUE(wg::RelayEndpoints::isRelay(ep)) << ep.toString();
  EXPECT_EQ(ep, engine->relayEndpointFor(key1));

  // The agent restarts: the new key takes the route chosen.
  respond(nodeUpdate("agent-1", key2));
  EXPECT_FALSE(engine->device().peer(key1));
  ASSERT_TRUE(engine->device().peer(key2));
  EXPECT_EQ(engine->device().peer(key2)->endpoint, engine->relayEndpointFor(key2));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kNewKey);

  // A disconnect is reported but the peer stays.
  respond(kindUpdate("agent-1", Update::KIND_DISCONNECTED, "reconnecting"));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kDeparted);
  EXPECT_TRUE(engine->device().peer(key2));
  EXPECT_FALSE(coordinator->setRoute("unknown", Route::kRelay));
}

TEST_F(CoordinatorTest, AServerErrorIsReportedAndTheHookDecides) {
  server_error = [](const std::string& e) { return e != "fatal"; };
  make();
  startSession();
  auto r = nodeUpdate("c1", key1);
  r.set_error("fatal");
  respond(r);
  EXPECT_TRUE(events.empty());  // the rest of the response is ignored
  r.set_error("minor");
  respond(r);
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(CoordinatorTest, TheLatestRelayTicketGoesWithTheHelloAndToTheOpenStream) {
  make();
  startSession();
  ASSERT_EQ(relays.size(), 1u);  // opened with the session, before any ticket
  EXPECT_EQ(coordinator->relayTicket(), nullptr);
  EXPECT_TRUE(relay_cbs[0].ticket.empty());

  ov::CoordinateResponse r;
  r.mutable_relay_ticket()->set_body("body-1");
  r.mutable_relay_ticket()->set_signature("sig-1");
  respond(r);
  ASSERT_NE(coordinator->relayTicket(), nullptr);
  ov::RelayTicket t;
  ASSERT_TRUE(t.ParseFromString(*coordinator->relayTicket()));
  EXPECT_EQ(t.body(), "body-1");
  ASSERT_EQ(relays[0]->tickets.size(), 1u);  // the open stream refreshes
  EXPECT_EQ(relays[0]->tickets[0], *coordinator->relayTicket());
  ASSERT_EQ(tickets_heard.size(), 1u);  // and the hook hears it
  EXPECT_EQ(tickets_heard[0], *coordinator->relayTicket());

  // Responses without a ticket keep it; the next stream's hello carries the latest.
  respond(nodeUpdate("c1", key1));
  r.mutable_relay_ticket()->set_body("body-2");
  respond(r);
  relay_cbs[0].on_done(14, "unavailable");
  clock.advance(250ms);
  ASSERT_EQ(relays.size(), 2u);
  ASSERT_TRUE(t.ParseFromString(relay_cbs[1].ticket));
  EXPECT_EQ(t.body(), "body-2");
  EXPECT_EQ(relays[0]->tickets.size(), 2u);
  EXPECT_EQ(tickets_heard.size(), 2u);
}

TEST_F(CoordinatorTest, TheRelayIsReopenedWithBackoffWhileTheSessionRuns) {
  make();
  uint64_t session = startSession();
  ASSERT_EQ(relays.size(), 1u);  // opened with the session
  EXPECT_EQ(engine->relayStream(), relays[0]);
  EXPECT_EQ(metric("wsa_overlay_relay_streams_total"), 1);
  relays[0]->stats_.packets_sent = 5;
  relays[0]->stats_.dropped_queue_full = 2;
  relays[0]->stats_.queued = 3;

  // It ends before it was ever acknowledged: 250 ms, doubling, up to 10 s.
  std::vector<Duration> expected = {250ms, 500ms, 1s, 2s, 4s, 8s, 10s, 10s};
  for (size_t i = 0; i < expected.size(); ++i) {
    MonoTime ended = clock.now();
    relay_cbs[i].on_done(14, "unavailable");
    EXPECT_FALSE(engine->relayStream());
    clock.advance(expected[i] - 1ms);
    ASSERT_EQ(relays.size(), i + 1) << i;
    clock.advance(1ms);
    ASSERT_EQ(relays.size(), i + 2) << i;
    EXPECT_EQ(relay_opened_at.back() - ended, expected[i]);
  }
  EXPECT_EQ(relay_ended.size(), expected.size());
  // The slot kept the counts of the streams that ended (their queues no longer count).
  EXPECT_EQ(metric("wsa_overlay_relay_streams_total"), static_cast<double>(relays.size()));
  EXPECT_EQ(metric("wsa_overlay_relay_packets_sent_total"), 5);
  EXPECT_EQ(metric("wsa_overlay_relay_dropped_total", "queue_full"), 2);
  EXPECT_EQ(metric("wsa_overlay_relay_queued_packets"), 0);

  // Acknowledged: the backoff starts over.
  relays.back()->ready_ = true;
  relay_cbs.back().on_ready();
  EXPECT_EQ(relay_ready, 1);
  EXPECT_EQ(metric("wsa_overlay_relay_connected"), 1);
  size_t n = relays.size();
  relay_cbs.back().on_done(14, "unavailable");
  clock.advance(250ms);
  EXPECT_EQ(relays.size(), n + 1);

  // Relayed datagrams reach the device from the sender's stand-in (dropped there: unknown).
  relay_cbs.back().on_packets({{key1, std::string(32, 'x')}});
  EXPECT_EQ(metric("wsa_overlay_relay_peers"), 1);

  // Stopping the session stops the relay: cancelled, taken out, never reopened.
  uint64_t before = relays.size();
  coordinator->stop(session);
  EXPECT_TRUE(relays.back()->cancelled);
  EXPECT_TRUE(coord->cancelled);
  EXPECT_FALSE(engine->relayStream());
  relay_cbs.back().on_done(1, "cancelled");  // a late end changes nothing
  clock.advance(60s);
  EXPECT_EQ(relays.size(), before);
  EXPECT_FALSE(coordinator->running());
}

TEST_F(CoordinatorTest, TheClientsRelayOpensAfterTheFirstResponseAndOnlyOnce) {
  CoordinatorOptions o;
  o.publish_endpoints = false;
  o.relay.open = CoordinatorOptions::Relay::Open::kAfterFirstResponse;
  o.relay.reopen = false;
  make(o);
  startSession();
  EXPECT_TRUE(relays.empty());
  respond(ov::CoordinateResponse());
  ASSERT_EQ(relays.size(), 1u);
  respond(ov::CoordinateResponse());
  EXPECT_EQ(relays.size(), 1u);
  relay_cbs[0].on_done(14, "gone");
  EXPECT_EQ(relay_ended, std::vector<int>{14});
  clock.advance(60s);
  EXPECT_EQ(relays.size(), 1u);
}

TEST_F(CoordinatorTest, NoRelayWhenToldSo) {
  CoordinatorOptions o;
  o.relay.open = CoordinatorOptions::Relay::Open::kNever;
  make(o);
  startSession();
  respond(ov::CoordinateResponse());
  EXPECT_TRUE(relays.empty());
}

TEST_F(CoordinatorTest, TheStreamsEndEndsTheSessionAndIsDelivered) {
  make();
  uint64_t s = startSession();
  ASSERT_NE(s, 0u);
  coord_cb.on_done(14, "server restarted");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0], (std::pair<int, std::string>{14, "server restarted"}));
  EXPECT_FALSE(coordinator->running());
  EXPECT_TRUE(relays[0]->cancelled);  // the relay goes with the session
  EXPECT_FALSE(engine->relayStream());
  clock.advance(60s);
  EXPECT_EQ(relays.size(), 1u);

  // Peers stay configured across sessions: the same node again is a change, not an addition.
  uint64_t s2 = startSession();
  EXPECT_NE(s2, s);
  respond(nodeUpdate("c1", key1));
  coord_cb.on_done(14, "again");
  uint64_t s3 = startSession();
  respond(nodeUpdate("c1", key1));
  EXPECT_EQ(events.back().kind, PeerEvent::Kind::kChanged);
  EXPECT_TRUE(readySent().empty());  // this session's stream
  // A stale stop (an old session's) does not touch the current one.
  coordinator->stop(s2);
  EXPECT_TRUE(coordinator->running());
  coordinator->stop(s3);
  EXPECT_FALSE(coordinator->running());
  // Responses after the stop are ignored; the end still comes through.
  respond(nodeUpdate("c9", key2));
  EXPECT_FALSE(engine->device().peer(key2));
  coord_cb.on_done(1, "cancelled");
  EXPECT_EQ(done.size(), 3u);
}

TEST_F(CoordinatorTest, TheEndIsDeliveredAfterTheCoordinatorIsGone) {
  make();
  startSession();
  auto end = coord_cb.on_done;
  coordinator.reset();
  EXPECT_TRUE(coord->cancelled);
  EXPECT_TRUE(relays[0]->cancelled);
  end(1, "cancelled");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].first, 1);
}

TEST_F(CoordinatorTest, ATransportWithoutCoordinationStartsNothing) {
  make();
  CoordinatorTransport t;
  t.coordinate = [](control::CoordinateStream::Callbacks) {
    return std::shared_ptr<control::CoordinateStream>();
  };
  EXPECT_EQ(coordinator->start("me", t, nullptr), 0u);
  EXPECT_FALSE(coordinator->running());
}

// The families the agent has exported since the overlay exists: names and labels unchanged.
TEST_F(CoordinatorTest, EngineMetricsKeepTheirNames) {
  std::set<std::string> names;
  for (const auto& f : engine->collectMetrics()) {
    names.insert(f.name);
    if (f.name.rfind("wsa_wg_", 0) == 0) {
      for (const auto& m : f.metric) {
        ASSERT_FALSE(m.label.empty()) << f.name;
        EXPECT_EQ(m.label[0].name, "interface");
        EXPECT_EQ(m.label[0].value, "overlay");
      }
    }
  }
  for (const char* n :
       {"wsa_overlay_tcp_accepted_total", "wsa_overlay_tcp_refused_total",
        "wsa_overlay_tcp_connections", "wsa_overlay_tcp_buffered_bytes",
        "wsa_overlay_packets_invalid_total", "wsa_overlay_relay_connected",
        "wsa_overlay_relay_streams_total", "wsa_overlay_relay_packets_sent_total",
        "wsa_overlay_relay_packets_received_total", "wsa_overlay_relay_queued_packets",
        "wsa_overlay_relay_peers", "wsa_overlay_relay_peers_reassigned_total",
        "wsa_overlay_relay_dropped_total", "wsa_wg_handshakes_total", "wsa_wg_peers"}) {
    EXPECT_EQ(names.count(n), 1u) << n;
  }
  // No forwarder configured here: no forwarder families.
  EXPECT_EQ(names.count("wsa_overlay_forwarded_connections_total"), 0u);
  for (const auto& f : engine->collectWgMetrics()) {
    EXPECT_EQ(f.name.rfind("wsa_wg_", 0), 0u) << f.name;
  }
  double no_stream = -1;
  for (const auto& f : engine->collectMetrics()) {
    if (f.name != "wsa_overlay_relay_dropped_total") continue;
    std::vector<std::string> reasons;
    for (const auto& m : f.metric) reasons.push_back(m.label.at(0).value);
    EXPECT_EQ(reasons, (std::vector<std::string>{"queue_full", "not_ready", "no_stream"}));
    no_stream = f.metric.at(2).counter.value;
  }
  EXPECT_EQ(no_stream, 0);
}

}  // namespace
}  // namespace wsa::overlay
