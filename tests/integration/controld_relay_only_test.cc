// A relay node apart from the control server (controld --relay-only) with the real binaries: the
// main controld issues relay tickets through Coordinate; a relay-only controld that trusts its
// key relays datagrams between peers whose tickets list each other, and nothing else.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "controld/relay_ticket.h"
#include "integration/grpc_client.h"
#include "support/controld_harness.h"
#include "support/http_client.h"
#include "support/process.h"

namespace wsa::test {
namespace {

namespace ov = wsa::overlay::v1;
using namespace std::chrono_literals;

const std::string kA(32, 'A');
const std::string kC(32, 'C');
const std::string kD(32, 'D');

ov::CoordinateRequest self(const std::string& id, const std::string& key) {
  ov::CoordinateRequest r;
  r.mutable_update_self()->mutable_node()->set_id(id);
  r.mutable_update_self()->mutable_node()->set_key(key);
  return r;
}

// Reads coordination responses until a relay ticket whose body reaches `want` keys arrives.
template <typename Stream>
ov::RelayTicket readTicket(Stream& s, int want) {
  ov::CoordinateResponse r;
  while (s.Read(&r)) {
    if (!r.has_relay_ticket()) continue;
    ov::RelayTicketBody b;
    if (b.ParseFromString(r.relay_ticket().body()) && b.may_reach_size() == want) {
      return r.relay_ticket();
    }
  }
  ADD_FAILURE() << "no relay ticket reaching " << want << " key(s)";
  return {};
}

ov::RelayRequest hello(const std::string& key, const ov::RelayTicket* ticket) {
  ov::RelayRequest r;
  r.set_hello_key(key);
  if (ticket != nullptr) *r.mutable_ticket() = *ticket;
  return r;
}

ov::RelayRequest packet(const std::string& to, const std::string& payload) {
  ov::RelayRequest r;
  auto* p = r.add_packets();
  p->set_peer_key(to);
  p->set_payload(payload);
  return r;
}

double metric(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

class RelayOnlyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    main_ = std::make_unique<ControldHarness>(basicControldConfig());
    main_->start();
    auto printed =
        runSplit({controldPath(), "--print-relay-key", "--data-dir", main_->dataDir()}, 10s);
    ASSERT_EQ(printed.code, 0) << printed.err;
    key_ = printed.out.substr(0, printed.out.find('\n'));
    ASSERT_EQ(key_.size(), 44u) << printed.out;

    ControldHarness::Options o;
    o.extra_args = {"--relay-only", "--max-relay-streams", "16"};
    relay_ = std::make_unique<ControldHarness>(
        nlohmann::json{{"relay_trusted_keys", nlohmann::json::array({key_})}}, o);
    relay_->start();
    main_client_ = std::make_unique<ControlClient>(main_->controlUrl());
    relay_client_ = std::make_unique<ControlClient>(relay_->controlUrl());
  }

  ov::LookupAgentResponse lookup() {
    ov::LookupAgentRequest req;
    req.set_agent_name("dev");
    ov::LookupAgentResponse out;
    auto st = main_client_->overlay->LookupAgent(callContext(main_->userToken(0)).get(), req, &out);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }

  std::string relayMetrics() {
    auto r = httpRequest("GET", "http://" + relay_->httpAddress() + "/metrics");
    EXPECT_EQ(r.status, 200);
    return "\n" + r.body;
  }

  std::unique_ptr<ControldHarness> main_;
  std::unique_ptr<ControldHarness> relay_;
  std::unique_ptr<ControlClient> main_client_;
  std::unique_ptr<ControlClient> relay_client_;
  std::string key_;
};

TEST_F(RelayOnlyTest, PeersWithTicketsRelayBothWaysAndOthersAreRefused) {
  struct stat st {};
  ASSERT_EQ(::stat((main_->dataDir() + "/relay-signing.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Agent and client coordinate with the main server and get tickets naming each other.
  auto who = lookup();
  auto actx = callContext(main_->agentToken(), 30s);
  auto cctx = callContext(main_->userToken(0), 30s);
  auto agent = main_client_->overlay->Coordinate(actx.get());
  auto cl = main_client_->overlay->Coordinate(cctx.get());
  ASSERT_TRUE(agent->Write(self("", kA)));
  ASSERT_TRUE(cl->Write(self(who.client_id(), kC)));
  ov::CoordinateRequest tunnel;
  tunnel.mutable_add_tunnel()->set_id(who.agent_id());
  ASSERT_TRUE(cl->Write(tunnel));
  ov::RelayTicket agent_ticket = readTicket(*agent, 1);
  ov::RelayTicket client_ticket = readTicket(*cl, 1);

  // A second client without a tunnel gets a ticket that reaches nobody.
  auto who2 = lookup();
  auto dctx = callContext(main_->userToken(0), 30s);
  auto d = main_client_->overlay->Coordinate(dctx.get());
  ASSERT_TRUE(d->Write(self(who2.client_id(), kD)));
  ov::RelayTicket d_ticket = readTicket(*d, 0);

  // Relay streams to the relay-only node carry no token: the ticket is the credential.
  auto arctx = callContext("", 30s);
  auto crctx = callContext("", 30s);
  auto drctx = callContext("", 30s);
  auto arelay = relay_client_->overlay->Relay(arctx.get());
  auto crelay = relay_client_->overlay->Relay(crctx.get());
  auto drelay = relay_client_->overlay->Relay(drctx.get());
  ASSERT_TRUE(arelay->Write(hello(kA, &agent_ticket)));
  ASSERT_TRUE(crelay->Write(hello(kC, &client_ticket)));
  ASSERT_TRUE(drelay->Write(hello(kD, &d_ticket)));
  ov::RelayResponse got;
  ASSERT_TRUE(arelay->Read(&got));
  EXPECT_EQ(got.packets_size(), 0);
  ASSERT_TRUE(crelay->Read(&got));
  ASSERT_TRUE(drelay->Read(&got));

  ASSERT_TRUE(arelay->Write(packet(kC, "ping from agent")));
  ASSERT_TRUE(crelay->Read(&got));
  ASSERT_GE(got.packets_size(), 1);
  EXPECT_EQ(got.packets(0).peer_key(), kA);
  EXPECT_EQ(got.packets(0).payload(), "ping from agent");
  ASSERT_TRUE(crelay->Write(packet(kA, "pong from client")));
  ASSERT_TRUE(arelay->Read(&got));
  EXPECT_EQ(got.packets(0).peer_key(), kC);
  EXPECT_EQ(got.packets(0).payload(), "pong from client");

  // D's ticket reaches nobody, and A's does not list D: not forwarded either way.
  ASSERT_TRUE(drelay->Write(packet(kA, "from d")));
  ASSERT_TRUE(arelay->Write(packet(kD, "to d")));
  // A later packet that does get through shows the denied ones were not queued before it.
  ASSERT_TRUE(crelay->Write(packet(kA, "after d")));
  ASSERT_TRUE(arelay->Read(&got));
  EXPECT_EQ(got.packets(0).payload(), "after d");
  ASSERT_TRUE(waitUntil(
      [&] {
        return metric(relayMetrics(), "wsa_controld_relay_packets_total{result=\"denied\"}") >= 2;
      },
      10s));

  // A hello without a ticket, and one with a forged ticket, are refused.
  auto nctx = callContext("", 10s);
  auto none = relay_client_->overlay->Relay(nctx.get());
  ASSERT_TRUE(none->Write(hello(kC, nullptr)));
  EXPECT_FALSE(none->Read(&got));
  auto status = none->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();

  auto forger = controld::RelayTicketSigner::generate();
  ov::RelayTicketBody forged_body;
  ASSERT_TRUE(forged_body.ParseFromString(client_ticket.body()));
  forged_body.add_may_reach(kD);
  auto forged = forger->sign(forged_body);
  auto fctx = callContext("", 10s);
  auto fake = relay_client_->overlay->Relay(fctx.get());
  ASSERT_TRUE(fake->Write(hello(kC, &forged)));
  EXPECT_FALSE(fake->Read(&got));
  status = fake->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // The genuine body with a signature of the wrong key is no better.
  ov::RelayTicket spliced = client_ticket;
  spliced.set_signature(forged.signature());
  auto sctx = callContext("", 10s);
  auto sp = relay_client_->overlay->Relay(sctx.get());
  ASSERT_TRUE(sp->Write(hello(kC, &spliced)));
  EXPECT_FALSE(sp->Read(&got));
  EXPECT_EQ(sp->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);

  std::string m = relayMetrics();
  EXPECT_EQ(metric(m, "wsa_controld_relay_tickets_total{result=\"accepted\"}"), 3);
  EXPECT_EQ(metric(m, "wsa_controld_relay_tickets_total{result=\"missing\"}"), 1);
  EXPECT_EQ(metric(m, "wsa_controld_relay_tickets_total{result=\"bad_signature\"}"), 2);
  EXPECT_EQ(metric(m, "wsa_controld_relay_packets_total{result=\"forwarded\"}"), 3);
  EXPECT_GE(metric(m, "wsa_controld_relay_streams"), 3);
  auto main_metrics = httpRequest("GET", "http://" + main_->httpAddress() + "/metrics");
  // At least one each for A (listing C), C (listing A), D (empty) and C's first (empty; A's
  // first is empty too unless the client's tunnel came before the agent's node).
  EXPECT_GE(metric("\n" + main_metrics.body, "wsa_controld_relay_tickets_issued_total"), 4);

  // The relay-only node serves Relay alone: no coordination, no admin API.
  auto lctx = callContext(main_->userToken(0), 10s);
  ov::LookupAgentRequest lreq;
  lreq.set_agent_name("dev");
  ov::LookupAgentResponse lout;
  EXPECT_EQ(relay_client_->overlay->LookupAgent(lctx.get(), lreq, &lout).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(httpRequest("GET", "http://" + relay_->httpAddress() + "/healthz").status, 200);
  EXPECT_EQ(httpRequest("GET", "http://" + relay_->httpAddress() + "/api/v1/agents", "",
                        {"Authorization: Bearer " + main_->adminToken()})
                .status,
            404);

  arctx->TryCancel();
  crctx->TryCancel();
  drctx->TryCancel();
  actx->TryCancel();
  cctx->TryCancel();
  dctx->TryCancel();
  EXPECT_EQ(relay_->stop(), 0);
  EXPECT_EQ(main_->stop(), 0);

  // Neither log holds a token or the signing key.
  auto key_pem = readText(main_->dataDir() + "/relay-signing.key");
  for (const std::string& log : {main_->log(), relay_->log()}) {
    EXPECT_EQ(log.find(main_->userToken(0)), std::string::npos);
    EXPECT_EQ(log.find(main_->agentToken()), std::string::npos);
    EXPECT_EQ(log.find(main_->adminToken()), std::string::npos);
    EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos);
    EXPECT_EQ(log.find(key_pem.substr(28, 40)), std::string::npos);
  }
  EXPECT_NE(relay_->log().find("relay-only"), std::string::npos);
}

TEST(RelayOnlyStartup, RefusesToStartWithoutATrustedKey) {
  auto r = runSplit({controldPath(), "--relay-only", "--grpc-listen", "127.0.0.1:0",
                     "--http-listen", "127.0.0.1:0", "--stun-listen", "none"},
                    10s);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--relay-trusted-key"), std::string::npos) << r.err;
  r = runSplit({controldPath(), "--relay-only", "--relay-trusted-key", "bm9wZQ==", "--grpc-listen",
                "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--stun-listen", "none"},
               10s);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("relay trusted key 1"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace wsa::test
