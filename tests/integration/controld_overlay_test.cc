// The overlay half of controld over real gRPC: lookup, coordination, relay maps and relaying.

#include <gtest/gtest.h>

#include "integration/grpc_client.h"
#include "support/controld_harness.h"

namespace wsa::test {
namespace {

namespace ov = wsa::overlay::v1;
using Kind = ov::CoordinateResponse::PeerUpdate;

class OverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cd_ = std::make_unique<ControldHarness>(basicControldConfig());
    cd_->start();
    client_ = std::make_unique<ControlClient>(cd_->controlUrl());
  }

  ov::LookupAgentResponse lookup(const std::string& token, grpc::Status* status = nullptr) {
    ov::LookupAgentRequest req;
    req.set_agent_name("dev");
    ov::LookupAgentResponse out;
    auto st = client_->overlay->LookupAgent(callContext(token).get(), req, &out);
    if (status != nullptr) *status = st;
    return out;
  }

  static ov::CoordinateRequest self(const std::string& id, char key) {
    ov::CoordinateRequest r;
    r.mutable_update_self()->mutable_node()->set_id(id);
    r.mutable_update_self()->mutable_node()->set_key(std::string(32, key));
    r.mutable_update_self()->mutable_node()->add_endpoints("198.18.0.2:41641");
    return r;
  }

  // Reads until an update about `id` of `kind` arrives (bounded by the call deadline).
  template <typename Stream>
  static bool readUntil(Stream& s, const std::string& id, Kind::Kind kind,
                        ov::CoordinateResponse::PeerUpdate* out = nullptr) {
    ov::CoordinateResponse r;
    while (s.Read(&r)) {
      for (const auto& u : r.peer_updates()) {
        if (u.id() == id && u.kind() == kind) {
          if (out != nullptr) *out = u;
          return true;
        }
      }
    }
    return false;
  }

  std::unique_ptr<ControldHarness> cd_;
  std::unique_ptr<ControlClient> client_;
};

TEST_F(OverlayTest, LookupAgentHonoursAllowedUsers) {
  grpc::Status st;
  auto ok = lookup(cd_->userToken(0), &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(ok.agent_id(), cd_->agentView()["id"]);
  EXPECT_EQ(ok.agent_addresses_size(), 2);
  EXPECT_EQ(ok.client_addresses_size(), 2);
  EXPECT_FALSE(ok.agent_connected());
  lookup(cd_->userToken(1), &st);  // mallory is not allowed
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  lookup(cd_->agentToken(), &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(OverlayTest, CoordinationAndRelayBetweenClientAndAgent) {
  auto who = lookup(cd_->userToken(0));
  auto actx = callContext(cd_->agentToken(), std::chrono::seconds(30));
  auto cctx = callContext(cd_->userToken(0), std::chrono::seconds(30));
  auto agent = client_->overlay->Coordinate(actx.get());
  auto cl = client_->overlay->Coordinate(cctx.get());
  ASSERT_TRUE(agent->Write(self("", 'A')));
  ASSERT_TRUE(cl->Write(self(who.client_id(), 'C')));
  ov::CoordinateRequest tunnel;
  tunnel.mutable_add_tunnel()->set_id(who.agent_id());
  ASSERT_TRUE(cl->Write(tunnel));

  Kind agent_node;
  ASSERT_TRUE(readUntil(*cl, who.agent_id(), Kind::KIND_NODE, &agent_node));
  EXPECT_EQ(agent_node.node().key(), std::string(32, 'A'));
  EXPECT_EQ(agent_node.node().addresses_size(), 2);
  ASSERT_TRUE(readUntil(*agent, who.client_id(), Kind::KIND_NODE));

  ov::CoordinateRequest rfh;
  rfh.add_ready_for_handshake()->set_id(who.client_id());
  ASSERT_TRUE(agent->Write(rfh));
  ASSERT_TRUE(readUntil(*cl, who.agent_id(), Kind::KIND_READY_FOR_HANDSHAKE));

  // Relay: both sides bind their keys, then packets cross in both directions.
  auto arctx = callContext(cd_->agentToken(), std::chrono::seconds(30));
  auto crctx = callContext(cd_->userToken(0), std::chrono::seconds(30));
  auto arelay = client_->overlay->Relay(arctx.get());
  auto crelay = client_->overlay->Relay(crctx.get());
  ov::RelayRequest hello;
  hello.set_hello_key(std::string(32, 'A'));
  ASSERT_TRUE(arelay->Write(hello));
  hello.set_hello_key(std::string(32, 'C'));
  ASSERT_TRUE(crelay->Write(hello));
  // Each stream's first response acknowledges its hello: only then is the binding live.
  ov::RelayResponse got;
  ASSERT_TRUE(arelay->Read(&got));
  EXPECT_EQ(got.packets_size(), 0);
  ASSERT_TRUE(crelay->Read(&got));
  EXPECT_EQ(got.packets_size(), 0);

  ov::RelayRequest from_agent;
  auto* p = from_agent.add_packets();
  p->set_peer_key(std::string(32, 'C'));
  p->set_payload("ping from agent");
  ASSERT_TRUE(arelay->Write(from_agent));
  ASSERT_TRUE(crelay->Read(&got));
  ASSERT_GE(got.packets_size(), 1);
  EXPECT_EQ(got.packets(0).peer_key(), std::string(32, 'A'));
  EXPECT_EQ(got.packets(0).payload(), "ping from agent");

  ov::RelayRequest from_client;
  p = from_client.add_packets();
  p->set_peer_key(std::string(32, 'A'));
  p->set_payload("pong from client");
  ASSERT_TRUE(crelay->Write(from_client));
  ASSERT_TRUE(arelay->Read(&got));
  EXPECT_EQ(got.packets(0).payload(), "pong from client");
  EXPECT_EQ(got.packets(0).peer_key(), std::string(32, 'C'));

  // A graceful disconnect of the client reaches the agent as DISCONNECTED.
  ov::CoordinateRequest bye;
  bye.mutable_disconnect();
  ASSERT_TRUE(cl->Write(bye));
  cl->WritesDone();
  ASSERT_TRUE(readUntil(*agent, who.client_id(), Kind::KIND_DISCONNECTED));
  EXPECT_TRUE(cl->Finish().ok());
}

TEST_F(OverlayTest, RelayRefusesKeysTheCallerDidNotPublish) {
  auto rctx = callContext(cd_->userToken(0), std::chrono::seconds(10));
  auto relay = client_->overlay->Relay(rctx.get());
  ov::RelayRequest hello;
  hello.set_hello_key(std::string(32, 'Q'));
  ASSERT_TRUE(relay->Write(hello));
  ov::RelayResponse r;
  EXPECT_FALSE(relay->Read(&r));
  auto st = relay->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("not published"), std::string::npos);
}

TEST_F(OverlayTest, RelayMapIsStreamed) {
  auto ctx = callContext(cd_->agentToken(), std::chrono::seconds(10));
  auto stream = client_->overlay->StreamRelayMaps(ctx.get(), {});
  ov::RelayMap map;
  ASSERT_TRUE(stream->Read(&map));
  ASSERT_EQ(map.regions_size(), 1);
  EXPECT_EQ(map.regions(0).region_id(), 1);
  ctx->TryCancel();
}

}  // namespace
}  // namespace wsa::test
