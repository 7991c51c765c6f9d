// The session's failure paths: the real control server (wsa_controld_lib) serves gRPC on a unix
// socket inside the test process. Session::connect asks it about agents the user may not
// reach, or that are not connected; Session::run coordinates with a stand-in agent (a
// Coordinate stream with the agent's token that publishes a node nothing answers for) and
// says why the agent could not be reached. No binaries are spawned.

#include "client/session.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "controld/config.h"
#include "controld/server.h"
#include "support/controld_harness.h"
#include "support/util.h"
#include "wsa/control/channel.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"

namespace wsa::client {
namespace {

namespace ov = wsa::overlay::v1;
using namespace std::chrono_literals;

// An agent that only coordinates: it publishes a node (a key nobody holds, the given
// endpoints) and so counts as connected; WireGuard never answers for it.
class StandInAgent {
 public:
  StandInAgent(const std::string& socket, const std::string& token,
               const std::vector<std::string>& endpoints) {
    channel_ = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
    stub_ = ov::Overlay::NewStub(channel_);
    control::prepareContext(ctx_, token);
    stream_ = stub_->Coordinate(&ctx_);
    ov::CoordinateRequest req;
    auto* node = req.mutable_update_self()->mutable_node();
    node->set_key(std::string(32, 'A'));
    for (const auto& e : endpoints) node->add_endpoints(e);
    ok_ = stream_->Write(req);
  }
  ~StandInAgent() {
    ctx_.TryCancel();
    stream_->Finish();
  }
  bool ok() const { return ok_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ov::Overlay::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<ov::CoordinateRequest, ov::CoordinateResponse>> stream_;
  bool ok_ = false;
};

// A command that only records that the session got as far as dialing.
class RecordStart final : public Command {
 public:
  void start(Session& session) override {
    started = true;
    session.finish();
  }
  bool started = false;
};

class ClientSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test::basicControldConfig();  // alice may reach "dev"; mallory may not
    auto config = controld::parseConfig(config_.dump(), "test config");
    ASSERT_TRUE(config) << config.error();
    controld::ControldOptions o;
    o.grpc_listen = "unix:" + dir_.file("grpc.sock");
    o.http_listen = "127.0.0.1:0";
    o.data_dir = dir_.file("data");
    o.shutdown_grace = std::chrono::milliseconds(100);
    auto server = controld::Controld::create(std::move(o), std::move(*config));
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
  }

  // Connects as user `user` (an index into the config's users) to `agent`.
  Outcome<std::unique_ptr<Session>> connect(const std::string& agent, size_t user = 0,
                                            RelayMode relay = RelayMode::kAuto,
                                            std::chrono::seconds timeout = 10s) {
    SessionOptions o;
    o.url = "unix:" + dir_.file("grpc.sock");
    o.token = config_["users"][user]["token"];
    o.agent = agent;
    o.relay = relay;
    o.connect_timeout = timeout;
    return Session::connect(std::move(o));
  }
  // Starts the stand-in agent "dev" and waits (bounded) until the server counts it connected.
  std::unique_ptr<StandInAgent> standInAgent(const std::vector<std::string>& endpoints) {
    auto agent = std::make_unique<StandInAgent>(dir_.file("grpc.sock"),
                                                config_["agents"][0]["token"], endpoints);
    EXPECT_TRUE(agent->ok());
    EXPECT_TRUE(test::waitUntil([&] { return connect("dev").ok(); }, 10s));
    return agent;
  }

  // Alice's session to "dev", run to its end with a command that records whether it was started.
  Exit runUntilTheEnd(RelayMode relay, std::chrono::seconds timeout, bool* dialed) {
    auto s = connect("dev", 0, relay, timeout);
    if (!s) return s.exit();
    RecordStart command;
    Exit e = (*s)->run(command);
    *dialed = command.started;
    return e;
  }

  test::TempDir dir_;
  nlohmann::json config_;
  std::unique_ptr<controld::Controld> server_;
};

TEST_F(ClientSessionTest, UnknownAgentFails) {
  auto s = connect("nosuch");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.exit().code, 1);
  EXPECT_EQ(s.exit().message,
            "agent \"nosuch\": no agent \"nosuch\" that user \"alice\" may reach");
}

TEST_F(ClientSessionTest, UserNotAllowedOnTheAgentFailsLikeAnUnknownAgent) {
  auto s = connect("dev", 1);  // mallory
  ASSERT_FALSE(s);
  EXPECT_EQ(s.exit().code, 1);
  EXPECT_EQ(s.exit().message, "agent \"dev\": no agent \"dev\" that user \"mallory\" may reach");
}

TEST_F(ClientSessionTest, AgentNotConnectedFails) {
  auto s = connect("dev");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.exit().code, 1);
  EXPECT_EQ(s.exit().message, "agent \"dev\" is not connected to the control server");
}

TEST_F(ClientSessionTest, UnknownTokenFails) {
  SessionOptions o;
  o.url = "unix:" + dir_.file("grpc.sock");
  o.token = "not-a-token";
  o.agent = "dev";
  o.connect_timeout = std::chrono::seconds(10);
  auto s = Session::connect(std::move(o));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.exit().code, 1);
  EXPECT_EQ(s.exit().message, "agent \"dev\": unknown token");
  // The token never shows in what the client prints.
  EXPECT_EQ(s.exit().message.find("not-a-token"), std::string::npos);
}

TEST_F(ClientSessionTest, BadUrlIsAUsageError) {
  SessionOptions o;
  o.url = "ftp://example.com";
  o.token = "t";
  o.agent = "dev";
  auto s = Session::connect(std::move(o));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.exit().code, 2);
  EXPECT_EQ(s.exit().message.rfind("--url: ", 0), 0u) << s.exit().message;
}

TEST_F(ClientSessionTest, RelayNeverAndAnAgentWithoutEndpointFails) {
  auto agent = standInAgent({});
  bool dialed = true;
  Exit e = runUntilTheEnd(RelayMode::kNever, 10s, &dialed);
  EXPECT_EQ(e.code, 1);
  EXPECT_EQ(e.message,
            "the agent publishes no UDP endpoint, and --relay never rules out the relay");
  EXPECT_FALSE(dialed);
}

TEST_F(ClientSessionTest, AnAgentThatNeverAnswersFailsAtTheDeadlineNamingThePath) {
  auto agent = standInAgent({"127.0.0.1:9"});
  bool dialed = true;
  Exit e = runUntilTheEnd(RelayMode::kNever, 1s, &dialed);
  EXPECT_EQ(e.code, 1);
  EXPECT_EQ(e.message,
            "could not reach agent \"dev\" over the overlay within 1 s (could not reach agent "
            "\"dev\": no WireGuard handshake completed over UDP to 127.0.0.1:9 (--relay never))");
  EXPECT_FALSE(dialed);  // the agent never said it was ready, and 5 s had not passed
}

TEST_F(ClientSessionTest, RelayAlwaysTriesTheRelayAndSaysSo) {
  auto agent = standInAgent({"127.0.0.1:9"});
  bool dialed = true;
  Exit e = runUntilTheEnd(RelayMode::kAlways, 1s, &dialed);
  EXPECT_EQ(e.code, 1);
  EXPECT_EQ(e.message,
            "could not reach agent \"dev\" over the overlay within 1 s (could not reach agent "
            "\"dev\": no WireGuard handshake completed through the control server's relay)");
  EXPECT_FALSE(dialed);
}

TEST(ClientSessionNoServer, UnreachableControlServerFailsWithinTheTimeout) {
  test::TempDir dir;
  SessionOptions o;
  o.url = "unix:" + dir.file("nobody.sock");
  o.token = "t";
  o.agent = "dev";
  o.connect_timeout = std::chrono::seconds(1);
  auto s = Session::connect(std::move(o));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.exit().code, 1);
  EXPECT_EQ(s.exit().message.rfind("agent \"dev\": ", 0), 0u) << s.exit().message;
}

}  // namespace
}  // namespace wsa::client
