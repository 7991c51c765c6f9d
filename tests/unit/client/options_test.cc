// The client's command-line parsing: each helper's result, or today's message with exit code 2.

#include "client/options.h"

#include <gtest/gtest.h>

#include "support/util.h"

namespace wsa::client {
namespace {

void expectUsage(const Exit& e, const std::string& message) {
  EXPECT_EQ(e.code, 2) << e.message;
  EXPECT_EQ(e.message, message);
}

TEST(ClientForwardSpec, PortsAndAddresses) {
  struct Case {
    std::string spec, listen;
    uint16_t remote;
  } cases[] = {
      {"8080", "127.0.0.1:8080", 8080},        {"0:4", "127.0.0.1:0", 4},
      {"9000:22", "127.0.0.1:9000", 22},       {"65535:65535", "127.0.0.1:65535", 65535},
      {"0.0.0.0:8080:80", "0.0.0.0:8080", 80}, {"[::1]:0:22", "[::1]:0", 22},
      {"unix:/tmp/s:22", "unix:/tmp/s", 22},
  };
  for (const auto& c : cases) {
    auto spec = parseForwardSpec(c.spec);
    ASSERT_TRUE(spec) << c.spec << ": " << spec.exit().message;
    EXPECT_EQ(spec->listen, c.listen) << c.spec;
    EXPECT_EQ(spec->remote_port, c.remote) << c.spec;
  }
}

TEST(ClientForwardSpec, BadPortsAreUsageErrors) {
  for (std::string bad : {"99999", "0", "8080:0", "x:y", "8080:", "", "8080:123456", "-1"}) {
    auto spec = parseForwardSpec(bad);
    ASSERT_FALSE(spec) << bad;
    expectUsage(spec.exit(), "forward " + bad + ": the remote port must be 1 to 65535");
  }
  auto spec = parseForwardSpec("99999:22");
  ASSERT_FALSE(spec);
  expectUsage(spec.exit(), "forward 99999:22: the local port must be 0 to 65535");
}

TEST(ClientForwardSpec, UdpTakesAnIpAddressAndItsBounds) {
  auto spec = parseUdpForwardSpec("5353:53", 16, "90s");
  ASSERT_TRUE(spec) << spec.exit().message;
  EXPECT_TRUE(spec->udp);
  EXPECT_EQ(spec->listen, "127.0.0.1:5353");
  EXPECT_EQ(spec->remote_port, 53);
  EXPECT_EQ(spec->max_flows, 16u);
  EXPECT_EQ(spec->idle_timeout, std::chrono::seconds(90));
  EXPECT_FALSE(parseForwardSpec("5353:53")->udp);
  auto unix_socket = parseUdpForwardSpec("unix:/tmp/s:53", 16, "60s");
  ASSERT_FALSE(unix_socket);
  expectUsage(unix_socket.exit(),
              "forward --udp unix:/tmp/s:53: the local address must be an IP address");
  for (std::string bad : {"0s", "2h", "soon"}) {
    auto r = parseUdpForwardSpec("53", 16, bad);
    ASSERT_FALSE(r) << bad;
    expectUsage(r.exit(),
                "forward --idle-timeout: \"" + bad + "\" is not a duration from 1s to 1h");
  }
  auto bad_port = parseUdpForwardSpec("8080:0", 16, "60s");
  ASSERT_FALSE(bad_port);
  expectUsage(bad_port.exit(), "forward 8080:0: the remote port must be 1 to 65535");
}

TEST(ClientSpeedtestOptions, DirectionDurationAndJson) {
  auto o = parseSpeedtestOptions("upload", "1500ms", true);
  ASSERT_TRUE(o) << o.exit().message;
  EXPECT_EQ(o->config.direction, speedtest::Direction::kUpload);
  EXPECT_EQ(o->config.duration, std::chrono::milliseconds(1500));
  EXPECT_TRUE(o->json);
  o = parseSpeedtestOptions("download", "5s", false);
  ASSERT_TRUE(o) << o.exit().message;
  EXPECT_EQ(o->config.direction, speedtest::Direction::kDownload);
  EXPECT_EQ(o->config.duration, std::chrono::seconds(5));
  EXPECT_FALSE(o->json);
  for (std::string edge : {"1s", "30s"})
    EXPECT_TRUE(parseSpeedtestOptions("download", edge, false));
}

TEST(ClientSpeedtestOptions, DurationsOutsideOneToThirtySecondsAreUsageErrors) {
  for (std::string bad : {"5 minutes", "999ms", "31s", "1m", "", "fast"}) {
    auto o = parseSpeedtestOptions("download", bad, false);
    ASSERT_FALSE(o) << bad;
    expectUsage(o.exit(), "speedtest --time: \"" + bad + "\" is not a duration from 1s to 30s");
  }
}

TEST(ClientRelayMode, Names) {
  EXPECT_EQ(*parseRelayMode("auto"), RelayMode::kAuto);
  EXPECT_EQ(*parseRelayMode("always"), RelayMode::kAlways);
  EXPECT_EQ(*parseRelayMode("never"), RelayMode::kNever);
  auto bad = parseRelayMode("sometimes");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.exit().code, 2);
}

TEST(ClientToken, FlagWinsOverFile) {
  test::TempDir dir;
  test::writeText(dir.file("token"), "from-file\n");
  auto t = resolveToken("from-flag", dir.file("token"));
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, "from-flag");
}

TEST(ClientToken, FileIsTrimmed) {
  test::TempDir dir;
  test::writeText(dir.file("token"), "  \tsecret-token \n\n");
  auto t = resolveToken("", dir.file("token"));
  ASSERT_TRUE(t) << t.exit().message;
  EXPECT_EQ(*t, "secret-token");
}

TEST(ClientToken, MissingIsAUsageError) {
  auto none = resolveToken("", "");
  ASSERT_FALSE(none);
  expectUsage(none.exit(), "a token is needed (--token-file, --token or WSA_TOKEN)");
  // A file holding only white space gives no token either.
  test::TempDir dir;
  test::writeText(dir.file("blank"), " \n");
  auto blank = resolveToken("", dir.file("blank"));
  ASSERT_FALSE(blank);
  expectUsage(blank.exit(), "a token is needed (--token-file, --token or WSA_TOKEN)");
}

TEST(ClientToken, UnreadableFileIsAUsageErrorNamingTheFlag) {
  test::TempDir dir;
  auto t = resolveToken("", dir.file("missing"));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.exit().code, 2);
  EXPECT_EQ(t.exit().message.rfind("--token-file: ", 0), 0u) << t.exit().message;
  EXPECT_NE(t.exit().message.find(dir.file("missing")), std::string::npos) << t.exit().message;
}

}  // namespace
}  // namespace wsa::client
