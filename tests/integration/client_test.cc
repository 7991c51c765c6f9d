// The client CLI (`wsa`) reaching the real agent through the overlay, coordinated by the real
// controld: no privileges, no TUN, everything on loopback (the agent publishes 127.0.0.1 as
// its UDP endpoint). The real OpenSSH client uses `wsa proxy` as its ProxyCommand.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support/agent_harness.h"
#include "support/client_helpers.h"
#include "support/controld_harness.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/util.h"

namespace wsa::test {
namespace {

using namespace std::chrono_literals;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cd_ = std::make_unique<ControldHarness>(config_);  // mallory may not reach dev
    cd_->start();
    AgentHarness::Options ao;
    ao.extra_args = {"--overlay-endpoint", agent_endpoint_};
    agent_ = std::make_unique<AgentHarness>(cd_->controlUrl(), cd_->agentToken(), ao);
    agent_->start();
    ASSERT_TRUE(waitUntil([&] { return cd_->agentView()["connected"] == true; }, scaled(20s)))
        << cd_->agentView().dump();
    writeText(tmp_.file("alice.token"), cd_->userToken(0));
    writeText(tmp_.file("mallory.token"), cd_->userToken(1));
  }
  void TearDown() override {
    if (agent_) {
      EXPECT_EQ(agent_->stop(), 0);
      if (HasFailure()) std::cerr << "---- agent log ----\n" << agent_->log() << "\n";
    }
  }
  std::vector<std::string> wsa(const std::string& user, std::vector<std::string> args) {
    std::vector<std::string> argv = {
        WSA_CLIENT_PATH,     "--url", cd_->controlUrl(), "--token-file", tmp_.file(user + ".token"),
        "--connect-timeout", "20"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::string proxyCommand(std::vector<std::string> options = {}) {
    options.insert(options.end(), {"proxy", "%h", "22"});
    return joinArgs(wsa("alice", options));
  }
  SplitResult ssh(const std::string& command, const std::string& input = "",
                  std::vector<std::string> wsa_options = {}) {
    return runSplit(sshArgv(proxyCommand(std::move(wsa_options)), command), scaled(60s), {}, input);
  }
  // Sends 8 MiB of pseudo-random bytes up through ssh and compares the remote checksum.
  void uploadChecksummed(uint32_t seed, std::vector<std::string> wsa_options = {}) {
    std::string data = patternBytes(8 << 20, seed);
    auto want = sha256Hex(data);
    auto up = ssh("sha256sum", data, std::move(wsa_options));
    EXPECT_EQ(up.code, 0) << up.err;
    EXPECT_EQ(up.out.substr(0, 64), want);
  }
  // Starts `wsa … forward` and waits until it prints the local address it serves (and, when
  // given, `also` on stderr); the address is left in `local`.
  std::unique_ptr<Process> startForward(std::vector<std::string> args, std::string* local,
                                        const std::string& also = "",
                                        const std::string& protocol = "") {
    Process::Options o;
    o.argv = wsa("alice", std::move(args));
    o.stderr_path = tmp_.file("forward.err");
    auto fwd = Process::start(o);
    std::smatch m;
    std::string err;
    EXPECT_TRUE(waitUntil(
        [&] {
          err = readText(tmp_.file("forward.err"));
          return std::regex_search(err, m,
                                   std::regex("forwarding " + protocol +
                                              R"((127\.0\.0\.1:\d+) to dev port \d+)")) &&
                 err.find(also) != std::string::npos;
        },
        scaled(30s)))
        << err;
    *local = m.empty() ? "" : std::string(m[1]);
    return fwd;
  }
  double controldMetric(const std::string& series) {
    auto r = httpRequest("GET", "http://" + cd_->httpAddress() + "/metrics", "",
                         {"Authorization: Bearer " + cd_->adminToken()});
    return metricValue(r.body, series);
  }

  // The UDP endpoint the agent publishes.
  std::string agent_endpoint_ = "127.0.0.1";
  nlohmann::json config_ = basicControldConfig();
  TempDir tmp_;
  std::unique_ptr<ControldHarness> cd_;
  std::unique_ptr<AgentHarness> agent_;
};

TEST_F(ClientTest, SshThroughTheOverlayWithWsaAsProxyCommand) {
  auto r = ssh("echo hello-$((6*7)); exit 3");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.out, "hello-42\n") << r.err;
  uploadChecksummed(7);
  // The agent learned the client as a coordinated peer and reports the SSH sessions.
  ASSERT_TRUE(waitUntil([&] { return cd_->agentView()["connections"].size() >= 4; }, scaled(15s)));
  auto conns = cd_->agentView()["connections"];
  EXPECT_EQ(conns[0]["ip"].get<std::string>().rfind("100.", 0), 0u) << conns.dump();
}

TEST_F(ClientTest, ProxyReachesTheHttpApiAndReportsErrorsClearly) {
  auto api = runSplit(wsa("alice", {"--log-level", "info", "proxy", "dev", "4"}), scaled(30s), {},
                      "GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(api.code, 0) << api.err;
  // The agent announced it had added us before we sent our first handshake.
  EXPECT_NE(api.err.find("agent ready for our handshake"), std::string::npos) << api.err;
  EXPECT_NE(api.out.find("HTTP/1.1 200"), std::string::npos) << api.out;
  EXPECT_NE(api.out.find("Hello from the wsa agent"), std::string::npos) << api.out;

  struct Case {
    std::string user;
    std::vector<std::string> args;
    int code;
    std::string message;
  } cases[] = {
      {"alice", {"proxy", "nosuch", "22"}, 1, "nosuch"},
      {"mallory", {"proxy", "dev", "22"}, 1, "dev"},
      {"alice", {"proxy", "dev", "5999"}, 1, "port 5999"},  // nothing listens: refused
      {"alice", {"proxy", "dev", "70000"}, 2, "70000"},
      {"alice", {"bogus"}, 2, "subcommand"},
  };
  for (const auto& c : cases) {
    auto r = runSplit(wsa(c.user, c.args), scaled(40s), {}, "");
    EXPECT_EQ(r.code, c.code) << c.args[0] << " " << (c.args.size() > 1 ? c.args[1] : "") << ": "
                              << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  auto no_token =
      runSplit({WSA_CLIENT_PATH, "--url", cd_->controlUrl(), "proxy", "dev"}, scaled(10s));
  EXPECT_EQ(no_token.code, 2);
  EXPECT_NE(no_token.err.find("token"), std::string::npos) << no_token.err;
  // Tokens never show up in what the client prints.
  EXPECT_EQ(api.err.find(cd_->userToken(0)), std::string::npos);
}

TEST_F(ClientTest, ForwardServesALocalPortUntilInterrupted) {
  std::string local;
  auto fwd = startForward({"forward", "dev", "0:4"}, &local);
  ASSERT_FALSE(local.empty());
  // Each local connection is its own overlay connection to the agent's HTTP API.
  for (int i = 0; i < 3; ++i) {
    auto r = httpRequest("GET", "http://" + local + "/", "", {}, scaled(10s));
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_NE(r.body.find("Hello from the wsa agent"), std::string::npos) << r.body;
  }
  fwd->signal(SIGTERM);
  EXPECT_EQ(fwd->wait(scaled(10s)), std::optional<int>(0)) << readText(tmp_.file("forward.err"));
  // The port is closed again.
  auto gone = httpRequest("GET", "http://" + local + "/", "", {}, scaled(5s));
  EXPECT_EQ(gone.status, 0);

  for (std::string bad : {"99999", "8080:0", "x:y"}) {
    auto r = runSplit(wsa("alice", {"forward", "dev", bad}), scaled(10s));
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  }
}

TEST_F(ClientTest, RelayAlwaysCarriesSshThroughTheControlServer) {
  uploadChecksummed(11, {"--relay", "always"});
  // Through controld, not over UDP: controld forwarded the datagrams, the agent received them
  // on its relay stream.
  EXPECT_GT(controldMetric("wsa_controld_relay_packets_total{result=\"forwarded\"}"), 5000.0);
  EXPECT_GT(metricValue(agent_->metrics(), "wsa_overlay_relay_packets_received_total"), 5000.0);
  EXPECT_EQ(metricValue(agent_->metrics(), "wsa_overlay_relay_connected"), 1.0);
  auto api =
      runSplit(wsa("alice", {"--log-level", "info", "--relay", "always", "proxy", "dev", "4"}),
               scaled(30s), {}, "GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(api.code, 0) << api.err;
  EXPECT_NE(api.out.find("HTTP/1.1 200"), std::string::npos) << api.out;
  EXPECT_NE(api.err.find("through the control server's relay"), std::string::npos) << api.err;
  EXPECT_EQ(api.err.find("reaching the agent directly"), std::string::npos) << api.err;
}

TEST_F(ClientTest, SpeedtestBothWaysDirectAndThroughTheRelay) {
  for (std::string relay : {"never", "always"}) {
    for (std::string direction : {"download", "upload"}) {
      auto r = runSplit(wsa("alice", {"--relay", relay, "speedtest", "dev", "-d", direction, "-t",
                                      "1s", "--json"}),
                        scaled(40s));
      ASSERT_EQ(r.code, 0) << relay << " " << direction << ": " << r.err;
      auto j = nlohmann::json::parse(r.out, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << r.out;
      EXPECT_EQ(j["direction"], direction) << r.out;
      EXPECT_GT(j["total"]["bytes"].get<double>(), 100000.0)
          << relay << " " << direction << ": " << r.out;
    }
  }
  // People get a table; a bad duration is a command-line error.
  auto r = runSplit(wsa("alice", {"speedtest", "dev", "-t", "1s"}), scaled(40s));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Mbit/s"), std::string::npos) << r.out;
  auto bad = runSplit(wsa("alice", {"speedtest", "dev", "-t", "5 minutes"}), scaled(10s));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("1s to 30s"), std::string::npos) << bad.err;
}

TEST_F(ClientTest, PingSaysThePathAndLatencyOfEachProbe) {
  auto r = runSplit(wsa("alice", {"ping", "dev", "-c", "3", "-i", "0.2", "--json"}), scaled(30s));
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int seq = 0;
  std::string last_path;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j["seq"], ++seq) << line;
    ASSERT_TRUE(j["path"].is_string()) << line;
    last_path = j["path"];
    EXPECT_GE(j["latency_ms"].get<double>(), 0.0) << line;
    if (last_path == "direct") {
      EXPECT_TRUE(j["endpoint"].is_string()) << line;
    } else {
      EXPECT_EQ(j["region"], 1) << line;
    }
  }
  EXPECT_EQ(seq, 3) << r.out;
  // On one machine the direct path is found within the first probes.
  EXPECT_EQ(last_path, "direct") << r.out;
  // People get a sentence per probe; --relay always keeps to the relay.
  auto text = runSplit(wsa("alice", {"--relay", "always", "ping", "dev", "-c", "2", "-i", "0.1"}),
                       scaled(30s));
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("pong from dev via relay"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("via direct"), std::string::npos) << text.out;
}

// A UDP echo server on the workspace's loopback (in the test process): one thread, one datagram
// at a time (at most 64 KiB), no queue of its own; it records each peer port it answered (one
// per flow the agent opened) and stops with the test.
class UdpEcho {
 public:
  UdpEcho() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~UdpEcho() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  std::set<uint16_t> peers() {
    std::lock_guard l(mu_);
    return peers_;
  }

 private:
  void serve() {
    std::vector<char> buf(65536);
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      ssize_t n =
          ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) continue;
      {
        std::lock_guard l(mu_);
        peers_.insert(ntohs(from.sin_port));
      }
      ::sendto(fd_, buf.data(), static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<uint16_t> peers_;
  std::thread thread_;
};

// A local UDP client of `wsa forward --udp`: one socket (one flow), lock-step exchanges.
class UdpClient {
 public:
  explicit UdpClient(const std::string& to) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(to.substr(to.rfind(':') + 1))));
    ::inet_pton(AF_INET, to.substr(0, to.rfind(':')).c_str(), &a.sin_addr);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  }
  ~UdpClient() { ::close(fd_); }
  // Sends `data` and waits (bounded) for the one answer; "" with `*ok` false when none came.
  std::string exchange(const std::string& data, bool* ok) {
    *ok = ::send(fd_, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size());
    pollfd p{fd_, POLLIN, 0};
    if (!*ok || ::poll(&p, 1, static_cast<int>(scaled(5s).count())) != 1) {
      *ok = false;
      return "";
    }
    std::string buf(65536, '\0');
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    *ok = n >= 0;
    buf.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return buf;
  }

 private:
  int fd_ = -1;
};

TEST_F(ClientTest, ForwardUdpReachesAnEchoServerOnTheWorkspaceLoopback) {
  UdpEcho echo;
  std::string local;
  auto fwd = startForward({"forward", "--udp", "dev", "0:" + std::to_string(echo.port())}, &local,
                          "", "UDP ");
  ASSERT_FALSE(local.empty());
  UdpClient client(local);
  // 200 datagrams of 1 to 1200 bytes, each answered intact.
  size_t bytes = 0;
  int intact = 0;
  for (int i = 0; i < 200; ++i) {
    std::string d = patternBytes(1 + static_cast<size_t>(i * 397) % 1200, static_cast<uint32_t>(i));
    if (i == 199) d = patternBytes(1200, 199);
    bytes += d.size();
    bool ok = false;
    std::string back = client.exchange(d, &ok);
    EXPECT_TRUE(ok) << "datagram " << i << " (" << d.size() << " bytes) got no answer";
    if (!ok) break;
    intact += back == d ? 1 : 0;
  }
  EXPECT_EQ(intact, 200);
  EXPECT_EQ(echo.peers().size(), 1u) << "one flow";
  // The agent counted them both ways, on one flow.
  auto m = agent_->metrics();
  EXPECT_EQ(metricValue(m, R"(wsa_overlay_udp_datagrams_total{direction="to_local"})"), 200.0);
  EXPECT_EQ(metricValue(m, R"(wsa_overlay_udp_datagrams_total{direction="from_local"})"), 200.0);
  EXPECT_EQ(metricValue(m, R"(wsa_overlay_udp_bytes_total{direction="to_local"})"),
            static_cast<double>(bytes));
  EXPECT_EQ(metricValue(m, "wsa_overlay_udp_flows"), 1.0);
  EXPECT_EQ(metricValue(m, "wsa_overlay_udp_flows_opened_total"), 1.0);
  fwd->signal(SIGTERM);
  EXPECT_EQ(fwd->wait(scaled(10s)), std::optional<int>(0)) << readText(tmp_.file("forward.err"));

  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--udp", "dev", "unix:/tmp/x:53"}, {"--udp", "--idle-timeout", "0s", "dev", "53"}}) {
    auto r = runSplit(wsa("alice",
                          [&] {
                            std::vector<std::string> a = {"forward"};
                            a.insert(a.end(), bad.begin(), bad.end());
                            return a;
                          }()),
                      scaled(10s));
    EXPECT_EQ(r.code, 2) << bad[1] << ": " << r.err;
  }
}

TEST_F(ClientTest, ForwardUdpAtItsFlowBoundClosesTheLeastRecentlyUsedFlow) {
  UdpEcho echo;
  std::string local;
  auto fwd = startForward({"--log-level", "info", "forward", "--udp", "--max-flows", "3", "dev",
                           "0:" + std::to_string(echo.port())},
                          &local, "", "UDP ");
  ASSERT_FALSE(local.empty());
  // Five local sockets, round robin, twice: with room for three flows, each datagram finds its
  // flow evicted and opens a new one (a new source port at the echo server), and every one is
  // still answered.
  std::vector<std::unique_ptr<UdpClient>> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(std::make_unique<UdpClient>(local));
  int answered = 0;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 5; ++i) {
      std::string d =
          patternBytes(100 + static_cast<size_t>(i), static_cast<uint32_t>(round * 10 + i));
      bool ok = false;
      answered += clients[static_cast<size_t>(i)]->exchange(d, &ok) == d ? 1 : 0;
    }
  }
  EXPECT_EQ(answered, 10);
  EXPECT_EQ(echo.peers().size(), 10u);
  EXPECT_EQ(metricValue(agent_->metrics(), "wsa_overlay_udp_flows_opened_total"), 10.0);
  // Within the bound, a flow is kept: the last three sockets again use their flows.
  for (int i = 2; i < 5; ++i) {
    bool ok = false;
    clients[static_cast<size_t>(i)]->exchange("again", &ok);
    EXPECT_TRUE(ok);
  }
  EXPECT_EQ(echo.peers().size(), 10u);
  fwd->signal(SIGINT);
  EXPECT_EQ(fwd->wait(scaled(10s)), std::optional<int>(0));
  std::string err = readText(tmp_.file("forward.err"));
  EXPECT_NE(err.find("10 flows (7 evicted at the bound of 3, 0 expired), 13 datagrams up"),
            std::string::npos)
      << err;
}

TEST_F(ClientTest, NetcheckReportsTheReflexiveAddressAndTheRegions) {
  auto r = runSplit({WSA_CLIENT_PATH, "--url", cd_->controlUrl(), "--token-file",
                     tmp_.file("alice.token"), "netcheck", "--json"},
                    scaled(30s));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  // On loopback, the "reflexive" address is the socket's own; one STUN port cannot tell
  // whether the mapping varies.
  ASSERT_EQ(j["reflexive"].size(), 1u) << r.out;
  EXPECT_EQ(j["reflexive"][0].get<std::string>().rfind("127.0.0.1:", 0), 0u) << r.out;
  EXPECT_TRUE(j["mapping_varies_by_destination"].is_null()) << r.out;
  EXPECT_EQ(j["preferred_region"], 1) << r.out;
  EXPECT_GE(j["region_latency_ms"]["1"].get<double>(), 0.0) << r.out;
  auto text = runSplit({WSA_CLIENT_PATH, "--url", cd_->controlUrl(), "--token-file",
                        tmp_.file("alice.token"), "netcheck"},
                       scaled(30s));
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("Reflexive address: 127.0.0.1:"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Preferred region: 1"), std::string::npos) << text.out;
}

TEST_F(ClientTest, TheAgentShowsItsPeersPathsAndStunFigures) {
  // A session that stays (a forwarder), so the agent has a peer to show.
  std::string local;
  auto fwd = startForward({"forward", "dev", "0:4"}, &local);
  ASSERT_FALSE(local.empty());
  auto http = httpRequest("GET", "http://" + local + "/", "", {}, scaled(10s));
  EXPECT_EQ(http.status, 200) << http.error;
  nlohmann::json j;
  ASSERT_TRUE(waitUntil(
      [&] {
        auto [status, body] = agent_->debugGet("/debug/overlay");
        if (status != 200) return false;
        j = nlohmann::json::parse(body, nullptr, false);
        return !j.is_discarded() && j["peers"].size() == 1 && j["peers"][0]["path"] == "direct";
      },
      scaled(10s)))
      << j.dump(2);
  EXPECT_TRUE(j["peers"][0]["has_session"].get<bool>()) << j.dump(2);
  EXPECT_GT(j["peers"][0]["rx_bytes"].get<double>(), 0.0);
  EXPECT_FALSE(j["peers"][0]["candidates"].empty()) << j.dump(2);
  EXPECT_FALSE(j["candidates"].empty()) << j.dump(2);
  std::string m = agent_->metrics();
  EXPECT_GT(metricValue(m, "wsa_overlay_stun_responses_total"), 0.0) << m;
  EXPECT_EQ(metricValue(m, "wsa_overlay_peers_by_path{path=\"direct\"}"), 1.0) << m;
  EXPECT_GT(metricValue(m, "wsa_overlay_probes_received_total{type=\"ping\"}"), 0.0) << m;
  fwd->signal(SIGINT);
  EXPECT_EQ(fwd->wait(scaled(10s)), std::optional<int>(0));
}

// The agent publishes an endpoint nothing answers on (a closed loopback port): the client's
// probes to it go unanswered. The relay carries the first packets at once (no waiting for a
// direct handshake), and the agent's own probes, sent to the client's published endpoints,
// show the client where the agent really is: a pong from an endpoint nobody published is a
// new candidate, and the direct path is found anyway.
class ClientNoDirectPathTest : public ClientTest {
 protected:
  ClientNoDirectPathTest() { agent_endpoint_ = "127.0.0.1:9"; }
};

TEST_F(ClientNoDirectPathTest, AutoStartsOnTheRelayWithoutWaiting) {
  auto started = std::chrono::steady_clock::now();
  auto api = runSplit(wsa("alice", {"--log-level", "info", "proxy", "dev", "4"}), scaled(30s), {},
                      "GET / HTTP/1.0\r\n\r\n");
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(api.code, 0) << api.err;
  EXPECT_NE(api.out.find("HTTP/1.1 200"), std::string::npos) << api.out;
  EXPECT_NE(api.err.find("through the relay first"), std::string::npos) << api.err;
  EXPECT_EQ(api.err.find("no direct handshake"), std::string::npos) << api.err;
  EXPECT_LT(took, scaled(3s)) << api.err;  // it waited 3 s for a direct handshake before
  // A forwarder finds a path before its first local connection.
  std::string local;
  auto fwd = startForward({"--log-level", "info", "forward", "dev", "0:4"}, &local,
                          "through the relay first");
  ASSERT_FALSE(local.empty());
  auto r = httpRequest("GET", "http://" + local + "/", "", {}, scaled(10s));
  EXPECT_EQ(r.status, 200) << r.error;
  fwd->signal(SIGINT);
  EXPECT_EQ(fwd->wait(scaled(10s)), std::optional<int>(0));
}

TEST_F(ClientNoDirectPathTest, RelayNeverFindsTheDirectPathTheAgentProbesFrom) {
  auto api =
      runSplit(wsa("alice", {"--log-level", "info", "--relay", "never", "proxy", "dev", "4"}),
               scaled(30s), {}, "GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(api.code, 0) << api.err;
  EXPECT_NE(api.out.find("HTTP/1.1 200"), std::string::npos) << api.out;
  EXPECT_NE(api.err.find("direct path"), std::string::npos) << api.err;
  EXPECT_EQ(api.err.find("127.0.0.1:9 ("), std::string::npos) << api.err;  // not the dead one
}

// The manifest disables direct connections: the agent publishes no endpoint and answers no
// probe; everything goes through the relay, and not one probe is sent.
class ClientDirectDisabledTest : public ClientTest {
 protected:
  ClientDirectDisabledTest() {
    config_["agents"][0]["manifest"]["disable_direct_connections"] = true;
  }
  double agentMetric(const std::string& series) { return metricValue(agent_->metrics(), series); }
};

TEST_F(ClientDirectDisabledTest, EverythingThroughTheRelayAndNotOneProbe) {
  uploadChecksummed(13);
  EXPECT_GT(controldMetric("wsa_controld_relay_packets_total{result=\"forwarded\"}"), 5000.0);
  for (const char* type : {"ping", "pong", "call_me_maybe"}) {
    std::string t = type;
    EXPECT_EQ(agentMetric("wsa_overlay_probes_sent_total{type=\"" + t + "\"}"), 0.0)
        << agent_->metrics();
    EXPECT_EQ(agentMetric("wsa_overlay_probes_received_total{type=\"" + t + "\"}"), 0.0)
        << agent_->metrics();
  }
}

TEST_F(ClientDirectDisabledTest, RelayNeverFailsClearly) {
  auto r = runSplit(
      {WSA_CLIENT_PATH, "--url", cd_->controlUrl(), "--token-file", tmp_.file("alice.token"),
       "--connect-timeout", "5", "--relay", "never", "proxy", "dev", "4"},
      scaled(30s), {}, "");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(
      r.err.find("the agent publishes no UDP endpoint, and --relay never rules out the relay"),
      std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace wsa::test
