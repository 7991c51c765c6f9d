// The session's failure paths before the overlay: the real control server (wsa_controld_lib)
// serves gRPC on a unix socket inside the test process, and Session::connect asks it about
// agents the user may not reach, or that are not connected. No binaries are spawned.

#include "client/session.h"

#include <gtest/gtest.h>

#include "controld/config.h"
#include "controld/server.h"
#include "support/controld_harness.h"
#include "support/util.h"

namespace wsa::client {
namespace {

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
  Outcome<std::unique_ptr<Session>> connect(const std::string& agent, size_t user = 0) {
    SessionOptions o;
    o.url = "unix:" + dir_.file("grpc.sock");
    o.token = config_["users"][user]["token"];
    o.agent = agent;
    o.connect_timeout = std::chrono::seconds(10);
    return Session::connect(std::move(o));
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
