// The real agent on the overlay, reached from a real WireGuard peer: controld assigns the
// agent its overlay addresses; the agent (in network namespace 0, no TUN: its userspace TCP/IP
// stack) is configured with a static peer through its WireGuard configuration socket; the
// peer is wireguard-go with a TUN interface in namespace 1, where the real OpenSSH client,
// curl, socat and wsa-speedtest reach the agent's services on overlay ports 22/1, 4 and 3 and
// a port forwarded to the agent's loopback. Underlay 198.18.252.0/24; the client's overlay
// address 100.64.200.2 and fd7a:115c:a1e0:200::2.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>

#include "support/agent_harness.h"
#include "support/controld_harness.h"
#include "support/netns.h"
#include "support/process.h"
#include "support/util.h"

namespace wsa::test {
namespace {

using namespace std::chrono_literals;

const char* const kClient4 = "100.64.200.2";
const char* const kClient6 = "fd7a:115c:a1e0:200::2";

class AgentOverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = netnsUnavailableReason(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(pathExists("/usr/bin/wireguard-go")) << "install wireguard-go";
    pair_ = std::make_unique<NetnsPair>("o");
    ASSERT_TRUE(pair_->ok()) << pair_->error();
    agent_if_ = pair_->ifname(0, "ag");
    go_if_ = pair_->ifname(1, "go");
    agent_sock_ = "/var/run/wireguard/" + agent_if_ + ".sock";
    ::mkdir("/var/run/wireguard", 0755);

    ControldHarness::Options co;
    co.grpc_on_unix_socket = true;  // reachable from the agent's namespace
    cd_ = std::make_unique<ControldHarness>(basicControldConfig(), co);
    cd_->start();
    AgentHarness::Options ao;
    ao.wrapper = pair_->exec(0, {});
    ao.extra_args = {"--overlay-port", "51820", "--overlay-config-socket", agent_sock_};
    agent_ = std::make_unique<AgentHarness>(cd_->controlUrl(), cd_->agentToken(), ao);
    agent_->start();
    // The overlay starts when the first manifest arrives. The configuration
    // socket is bound before the "overlay up" line is logged, so wait for both.
    std::smatch m;
    std::string log;
    const std::regex up(R"(overlay up: addresses ([0-9.]+), ([0-9a-f:]+),)");
    ASSERT_TRUE(waitUntil(
        [&] {
          log = agent_->log();
          return pathExists(agent_sock_) && std::regex_search(log, m, up);
        },
        scaled(20s)))
        << agent_->log();
    agent4_ = m[1];
    agent6_ = m[2];

    // wireguard-go in namespace 1, the agent's peer.
    go_ = std::make_unique<WireguardGo>(*pair_, 1, go_if_, tmp_.file("go.log"));
    ASSERT_TRUE(go_->waitReady(scaled(10s)));
    auto go_key = makeWgKeyPair(tmp_.file("go.key"));
    auto pub = pair_->run(0, {"wg", "show", agent_if_, "public-key"});
    ASSERT_EQ(pub.code, 0) << pub.output;
    std::string agent_pub = pub.output.substr(0, 44);

    // The agent learns wireguard-go's endpoint from its first initiation.
    auto a = pair_->run(0, {"wg", "set", agent_if_, "peer", go_key.public_key, "allowed-ips",
                            std::string(kClient4) + "/32," + kClient6 + "/128"});
    ASSERT_EQ(a.code, 0) << a.output;
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"wg", "set", go_if_, "listen-port", "51821", "private-key", go_key.private_path,
              "peer", agent_pub, "allowed-ips", agent4_ + "/32," + agent6_ + "/128", "endpoint",
              pair_->underlay(0) + ":51820"},
             {"ip", "addr", "add", std::string(kClient4) + "/32", "dev", go_if_},
             {"ip", "-6", "addr", "add", std::string(kClient6) + "/128", "dev", go_if_, "nodad"},
             {"ip", "link", "set", go_if_, "up"},
             {"ip", "route", "add", agent4_ + "/32", "dev", go_if_},
             {"ip", "-6", "route", "add", agent6_ + "/128", "dev", go_if_}}) {
      auto r = pair_->run(1, cmd);
      ASSERT_EQ(r.code, 0) << r.output;
    }
  }

  void TearDown() override {
    if (agent_) {
      int code = agent_->stop();
      EXPECT_EQ(code, 0) << agent_->log();
      if (HasFailure()) std::cerr << "---- agent log ----\n" << agent_->log() << "\n";
    }
    go_.reset();
    ::unlink(agent_sock_.c_str());
    agent_.reset();
    cd_.reset();
    pair_.reset();
  }

  // The real OpenSSH client in the peer's namespace, through wireguard-go into the agent.
  RunResult ssh(const std::string& host, const std::string& port, const std::string& command) {
    return pair_->run(1,
                      {"ssh", "-p", port, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                       "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o",
                       "ConnectTimeout=10", "overlay-user@" + host, command},
                      scaled(30s));
  }

  TempDir tmp_;
  std::unique_ptr<NetnsPair> pair_;
  std::unique_ptr<ControldHarness> cd_;
  std::unique_ptr<AgentHarness> agent_;
  std::unique_ptr<WireguardGo> go_;
  std::string agent_if_, go_if_, agent_sock_, agent4_, agent6_;
};

TEST_F(AgentOverlayTest, ServicesAndForwardedPortsOverTheOverlay) {
  // Overlay addresses come from controld, in the ranges the protocol promises.
  EXPECT_EQ(agent4_.rfind("100.", 0), 0u) << agent4_;
  EXPECT_EQ(agent6_.rfind("fd7a:115c:a1e0:", 0), 0u) << agent6_;

  // ICMP echo, answered by the agent's userspace stack.
  for (const auto& to : {agent4_, agent6_}) {
    auto r = pair_->run(1, {"ping", "-c", "2", "-i", "0.2", "-W", "5", to}, scaled(20s));
    EXPECT_EQ(r.code, 0) << "ping " << to << ":\n" << r.output;
  }

  // SSH on ports 22 and 1, IPv4 and IPv6: no SSH authentication on the overlay (reaching the
  // agent is the authorisation), commands run in the workspace.
  auto s22 = ssh(agent4_, "22", "echo overlay-ssh-$((6*7))");
  EXPECT_EQ(s22.code, 0) << s22.output;
  EXPECT_NE(s22.output.find("overlay-ssh-42"), std::string::npos) << s22.output;
  auto s1 = ssh(agent6_, "1", "echo port-one");
  EXPECT_EQ(s1.code, 0) << s1.output;
  EXPECT_NE(s1.output.find("port-one"), std::string::npos) << s1.output;
  // The audit names the peer's overlay address.
  ASSERT_TRUE(waitUntil([&] { return cd_->agentView()["connections"].size() >= 4; }, scaled(15s)))
      << cd_->agentView().dump();
  auto conns = cd_->agentView()["connections"];
  bool saw_client_ip = false;
  for (const auto& c : conns) saw_client_ip = saw_client_ip || c["ip"] == kClient4;
  EXPECT_TRUE(saw_client_ip) << conns.dump();

  // The HTTP API on port 4.
  auto api = pair_->run(1, {"curl", "-sS", "-m", "10", "http://" + agent4_ + ":4/"}, scaled(20s));
  EXPECT_EQ(api.code, 0) << api.output;
  EXPECT_NE(api.output.find("{"), std::string::npos) << api.output;

  // The speed test on port 3.
  auto st = pair_->run(1, {WSA_SPEEDTEST_PATH, agent4_ + ":3", "-t", "1s"}, scaled(30s));
  EXPECT_EQ(st.code, 0) << st.output;

  // Any other port reaches the workspace's loopback; a closed one is refused.
  Process::Options srv;
  srv.argv = pair_->exec(
      0, {"socat", "TCP4-LISTEN:8080,bind=127.0.0.1,reuseaddr", "SYSTEM:echo from-the-workspace"});
  auto server = Process::start(srv);
  ASSERT_TRUE(pair_->waitListening(0, 8080, scaled(10s)));
  auto fwd = pair_->run(1, {"socat", "-T", "10", "-", "TCP:" + agent4_ + ":8080"}, scaled(20s));
  EXPECT_NE(fwd.output.find("from-the-workspace"), std::string::npos) << fwd.output;
  auto closed =
      pair_->run(1, {"curl", "-sS", "-m", "10", "http://" + agent4_ + ":8081/"}, scaled(20s));
  EXPECT_EQ(closed.code, 7) << "curl: 7 = could not connect (refused), 56 would be a reset: "
                            << closed.output;

  // The agent's metrics show the overlay (read inside its namespace).
  auto metrics =
      pair_->run(0, {"curl", "-sS", "-m", "10",
                     "http://" + agent_->ready()["prometheus"].get<std::string>() + "/metrics"});
  EXPECT_NE(metrics.output.find("wsa_wg_handshakes_total{interface=\"overlay\"}"),
            std::string::npos)
      << metrics.output.substr(0, 2000);
  EXPECT_GE(metricValue(metrics.output, "wsa_overlay_tcp_accepted_total"), 5.0)
      << metrics.output.substr(0, 2000);
  EXPECT_EQ(metricValue(metrics.output, "wsa_overlay_forwarded_connections_total"), 1.0);
}

}  // namespace
}  // namespace wsa::test
