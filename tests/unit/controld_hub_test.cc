#include <gtest/gtest.h>

#include "controld/hub.h"

namespace wsa::controld {
namespace {

namespace ov = wsa::overlay::v1;
using Kind = ov::CoordinateResponse::PeerUpdate;

// Records everything the hub sends to one stream.
class FakeStream : public EventSink, public CoordinationSink, public RelaySink {
 public:
  explicit FakeStream(size_t capacity = 1000) : capacity_(capacity) {}
  bool pushEvent(const agent::v1::ServerEvent& e) override {
    events.push_back(e);
    return true;
  }
  bool pushCoordination(const ov::CoordinateResponse& r) override {
    coordination.push_back(r);
    return true;
  }
  bool pushPacket(const std::string& src, const std::string& payload) override {
    if (packets.size() >= capacity_) return false;
    packets.emplace_back(src, payload);
    return true;
  }
  void closeStream(const std::string& reason) override { closed = reason; }

  // Updates about `id` of the given kind.
  int count(const std::string& id, Kind::Kind kind) const {
    int n = 0;
    for (const auto& r : coordination) {
      for (const auto& u : r.peer_updates()) n += (u.id() == id && u.kind() == kind) ? 1 : 0;
    }
    return n;
  }
  std::string lastError() const {
    for (auto it = coordination.rbegin(); it != coordination.rend(); ++it) {
      if (!it->error().empty()) return it->error();
    }
    return "";
  }

  std::vector<agent::v1::ServerEvent> events;
  std::vector<ov::CoordinateResponse> coordination;
  std::vector<std::pair<std::string, std::string>> packets;
  std::string closed;

 private:
  size_t capacity_;
};

const std::string kAgentId = "11111111-1111-4111-8111-111111111111";

class HubTest : public ::testing::Test {
 protected:
  HubTest() {
    Hub::Callbacks cb;
    cb.on_agent_connection = [this](const std::string& id, bool c) {
      connection_changes.emplace_back(id, c);
    };
    hub = std::make_unique<Hub>(
        std::vector<AgentIdentity>{
            {kAgentId, "dev", {"100.64.0.1/32", "fd7a:115c:a1e0:a::1/128"}, {"alice"}}},
        cb);
  }

  static ov::CoordinateRequest updateSelf(const std::string& id, char key_byte) {
    ov::CoordinateRequest r;
    auto* n = r.mutable_update_self()->mutable_node();
    n->set_id(id);
    n->set_key(std::string(32, key_byte));
    n->add_endpoints("198.18.0.1:51820");
    n->add_addresses("10.0.0.1/32");  // ignored: the server assigns addresses
    return r;
  }
  static ov::CoordinateRequest addTunnel(const std::string& id) {
    ov::CoordinateRequest r;
    r.mutable_add_tunnel()->set_id(id);
    return r;
  }

  Principal agent{Principal::Kind::kAgent, "dev", kAgentId};
  Principal alice{Principal::Kind::kUser, "alice", ""};
  Principal mallory{Principal::Kind::kUser, "mallory", ""};
  std::unique_ptr<Hub> hub;
  std::vector<std::pair<std::string, bool>> connection_changes;
};

TEST_F(HubTest, EventStreamsTrackConnectionAndReceiveBroadcasts) {
  auto s1 = std::make_shared<FakeStream>();
  auto s2 = std::make_shared<FakeStream>();
  ASSERT_TRUE(hub->addEventStream(kAgentId, s1.get()));
  ASSERT_TRUE(hub->addEventStream(kAgentId, s2.get()));
  EXPECT_TRUE(hub->agentConnected(kAgentId));
  agent::v1::ServerEvent ev;
  ev.mutable_banners_changed();
  EXPECT_EQ(hub->broadcastEvent(ev), 2u);
  hub->removeEventStream(kAgentId, s1.get());
  hub->removeEventStream(kAgentId, s2.get());
  EXPECT_FALSE(hub->agentConnected(kAgentId));
  // One transition each way, not one per stream.
  ASSERT_EQ(connection_changes.size(), 2u);
  EXPECT_TRUE(connection_changes[0].second);
  EXPECT_FALSE(connection_changes[1].second);
}

TEST_F(HubTest, ClientAndAgentExchangeNodesThroughATunnel) {
  auto agent_stream = std::make_shared<FakeStream>();
  auto client_stream = std::make_shared<FakeStream>();
  auto client = hub->issueClient("alice");
  ASSERT_EQ(client.addresses.size(), 2u);
  EXPECT_EQ(client.addresses[0].rfind("100.", 0), 0u);

  hub->coordinate(agent_stream.get(), agent, updateSelf("", 'A'));
  hub->coordinate(client_stream.get(), alice, updateSelf(client.id, 'C'));
  hub->coordinate(client_stream.get(), alice, addTunnel(kAgentId));

  ASSERT_EQ(client_stream->count(kAgentId, Kind::KIND_NODE), 1);
  ASSERT_EQ(agent_stream->count(client.id, Kind::KIND_NODE), 1);
  // The server assigns addresses; a peer cannot claim others.
  const auto& node = client_stream->coordination.back().peer_updates(0).node();
  EXPECT_EQ(node.addresses(0), "100.64.0.1/32");
  EXPECT_EQ(node.allowed_ips_size(), 2);

  // Node changes propagate; ready-for-handshake is forwarded.
  hub->coordinate(agent_stream.get(), agent, updateSelf("", 'A'));
  EXPECT_EQ(client_stream->count(kAgentId, Kind::KIND_NODE), 2);
  ov::CoordinateRequest rfh;
  rfh.add_ready_for_handshake()->set_id(client.id);
  hub->coordinate(agent_stream.get(), agent, rfh);
  EXPECT_EQ(client_stream->count(kAgentId, Kind::KIND_READY_FOR_HANDSHAKE), 1);

  // Graceful disconnect is DISCONNECTED; a dropped stream is LOST.
  ov::CoordinateRequest bye;
  bye.mutable_disconnect();
  hub->coordinate(client_stream.get(), alice, bye);
  hub->coordinationEnded(client_stream.get());
  EXPECT_EQ(agent_stream->count(client.id, Kind::KIND_DISCONNECTED), 1);
}

TEST_F(HubTest, AgentReconnectRestoresNodesForClients) {
  auto agent1 = std::make_shared<FakeStream>();
  auto client_stream = std::make_shared<FakeStream>();
  auto client = hub->issueClient("alice");
  hub->coordinate(client_stream.get(), alice, updateSelf(client.id, 'C'));
  hub->coordinate(client_stream.get(), alice, addTunnel(kAgentId));
  hub->coordinate(agent1.get(), agent, updateSelf("", 'A'));
  hub->coordinationEnded(agent1.get());  // lost, no Disconnect
  EXPECT_EQ(client_stream->count(kAgentId, Kind::KIND_LOST), 1);
  auto agent2 = std::make_shared<FakeStream>();
  hub->coordinate(agent2.get(), agent, updateSelf("", 'A'));
  EXPECT_EQ(client_stream->count(kAgentId, Kind::KIND_NODE), 2);
  EXPECT_EQ(agent2->count(client.id, Kind::KIND_NODE), 1);
}

TEST_F(HubTest, RefusesStrangers) {
  auto s = std::make_shared<FakeStream>();
  // A client id that was not issued to this user.
  auto client = hub->issueClient("alice");
  hub->coordinate(s.get(), mallory, updateSelf(client.id, 'M'));
  EXPECT_NE(s->lastError().find("unknown client id"), std::string::npos);
  // A user not allowed on the agent.
  auto m = hub->issueClient("mallory");
  hub->coordinate(s.get(), mallory, updateSelf(m.id, 'M'));
  hub->coordinate(s.get(), mallory, addTunnel(kAgentId));
  EXPECT_NE(s->lastError().find("may not reach"), std::string::npos);
  // Requests before update_self.
  auto s2 = std::make_shared<FakeStream>();
  hub->coordinate(s2.get(), alice, addTunnel(kAgentId));
  EXPECT_NE(s2->lastError().find("update_self"), std::string::npos);
  // Bad key.
  auto bad = updateSelf(hub->issueClient("alice").id, 'x');
  bad.mutable_update_self()->mutable_node()->set_key("short");
  hub->coordinate(s2.get(), alice, bad);
  EXPECT_NE(s2->lastError().find("32-byte"), std::string::npos);
}

TEST_F(HubTest, RelayForwardsOnlyBetweenTunnelledPeers) {
  auto agent_coord = std::make_shared<FakeStream>();
  auto client_coord = std::make_shared<FakeStream>();
  auto agent_relay = std::make_shared<FakeStream>();
  auto client_relay = std::make_shared<FakeStream>(/*capacity=*/2);
  auto client = hub->issueClient("alice");
  hub->coordinate(agent_coord.get(), agent, updateSelf("", 'A'));
  hub->coordinate(client_coord.get(), alice, updateSelf(client.id, 'C'));

  // Keys must have been published by the same caller.
  EXPECT_NE(hub->addRelay(client_relay.get(), alice, std::string(32, 'A')), "");
  ASSERT_EQ(hub->addRelay(agent_relay.get(), agent, std::string(32, 'A')), "");
  ASSERT_EQ(hub->addRelay(client_relay.get(), alice, std::string(32, 'C')), "");

  // No tunnel yet: denied.
  hub->relay(client_relay.get(), std::string(32, 'A'), "p0");
  EXPECT_TRUE(agent_relay->packets.empty());
  EXPECT_EQ(hub->counters().relay_denied, 1u);

  hub->coordinate(client_coord.get(), alice, addTunnel(kAgentId));
  hub->relay(client_relay.get(), std::string(32, 'A'), "p1");
  ASSERT_EQ(agent_relay->packets.size(), 1u);
  EXPECT_EQ(agent_relay->packets[0].first, std::string(32, 'C'));
  EXPECT_EQ(agent_relay->packets[0].second, "p1");

  // Unknown destination and a full queue are counted, not fatal.
  hub->relay(client_relay.get(), std::string(32, 'Z'), "p2");
  EXPECT_EQ(hub->counters().relay_no_route, 1u);
  for (int i = 0; i < 3; ++i) hub->relay(agent_relay.get(), std::string(32, 'C'), "x");
  EXPECT_EQ(client_relay->packets.size(), 2u);
  EXPECT_EQ(hub->counters().relay_queue_full, 1u);

  // A peer that publishes a new key no longer relays under the old binding.
  hub->coordinate(client_coord.get(), alice, updateSelf(client.id, 'D'));
  auto denied = hub->counters().relay_denied;
  hub->relay(client_relay.get(), std::string(32, 'A'), "p3");
  EXPECT_EQ(agent_relay->packets.size(), 1u);
  EXPECT_EQ(hub->counters().relay_denied, denied + 1);
}

TEST_F(HubTest, ShutdownClosesEveryOpenStreamAndRefusesNew) {
  auto a = std::make_shared<FakeStream>();
  auto b = std::make_shared<FakeStream>();
  ASSERT_TRUE(hub->openStream(a.get()));
  ASSERT_TRUE(hub->openStream(b.get()));
  hub->shutdown("bye");
  EXPECT_EQ(a->closed, "bye");
  EXPECT_EQ(b->closed, "bye");
  auto c = std::make_shared<FakeStream>();
  EXPECT_FALSE(hub->openStream(c.get()));
  EXPECT_FALSE(hub->addEventStream(kAgentId, c.get()));
}

TEST_F(HubTest, IssuedClientIdentitiesAreBounded) {
  std::set<std::string> v4;
  for (int i = 0; i < 4000; ++i) v4.insert(hub->issueClient("alice").addresses[0]);
  // All distinct while issued.
  EXPECT_EQ(v4.size(), 4000u);
  // Past the cap, the oldest unused identities are forgotten, so memory stays bounded.
  auto s = std::make_shared<FakeStream>();
  auto first = hub->issueClient("alice");
  for (int i = 0; i < 4096; ++i) hub->issueClient("alice");
  hub->coordinate(s.get(), alice, updateSelf(first.id, 'F'));
  EXPECT_NE(s->lastError().find("unknown client id"), std::string::npos);
}

}  // namespace
}  // namespace wsa::controld
