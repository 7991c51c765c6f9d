// controld's STUN server over real UDP: Binding answers (IPv4, IPv6), the flood bound,
// malformed datagrams, and the STUN ports in the default relay map.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "integration/grpc_client.h"
#include "support/controld_harness.h"
#include "support/http_client.h"
#include "wsa/stun/stun.h"

namespace wsa::test {
namespace {

using namespace std::chrono_literals;
namespace ov = wsa::overlay::v1;

// A UDP socket bound to `local` (port 0), closed with the test.
class UdpSocket {
 public:
  // `ip`: "127.0.0.1" or "::1"; the port is picked by the kernel.
  explicit UdpSocket(const std::string& ip) {
    bool v6 = ip.find(':') != std::string::npos;
    auto ep = wg::parseEndpoint(v6 ? "[" + ip + "]:1" : ip + ":1");
    if (!ep) throw std::runtime_error(ep.error());
    ep->port = 0;
    fd_ = ::socket(ep->v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len = ep->toSockaddr(&ss);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
  }
  ~UdpSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;
  bool ok() const { return fd_ >= 0; }

  wg::Endpoint local() const {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    return wg::Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&ss));
  }
  bool send(const std::string& to, const std::vector<uint8_t>& data) const {
    auto ep = wg::parseEndpoint(to);
    sockaddr_storage ss{};
    socklen_t len = ep->toSockaddr(&ss);
    return ::sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
           static_cast<ssize_t>(data.size());
  }
  // The next datagram within `timeout`, or nullopt.
  std::optional<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::vector<uint8_t> buf(2048);
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

 private:
  int fd_ = -1;
};

// Sends a Binding request from `sock` to `server` and returns the answer (a few tries).
std::optional<stun::Response> stunBind(const UdpSocket& sock, const std::string& server) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto id = stun::randomTransactionId();
    if (!sock.send(server,
                   stun::buildBindingRequest(id, {.software = "test", .fingerprint = true}))) {
      continue;
    }
    auto deadline = std::chrono::steady_clock::now() + scaled(1000ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto d = sock.receive(scaled(1000ms));
      if (!d) break;
      auto r = stun::parseBindingResponse(*d);
      if (r && r->id == id) return *r;
    }
  }
  return std::nullopt;
}

double stunCount(const ControldHarness& cd, const std::string& result) {
  auto r = httpRequest("GET", "http://" + cd.httpAddress() + "/metrics");
  return metricValue(r.body, "wsa_controld_stun_requests_total{result=\"" + result + "\"}");
}

uint16_t portOf(const std::string& address) {
  auto ep = wg::parseEndpoint(address);
  return ep ? ep->port : 0;
}

TEST(ControldStunTest, AnswersBindingRequestsWithTheSourceAddress) {
  ControldHarness cd(basicControldConfig());
  cd.start();
  ASSERT_EQ(cd.stunAddresses().size(), 1u);
  EXPECT_NE(cd.log().find("STUN on " + cd.stunAddresses()[0]), std::string::npos) << cd.log();
  UdpSocket sock("127.0.0.1");
  ASSERT_TRUE(sock.ok());
  auto r = stunBind(sock, cd.stunAddresses()[0]);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->xor_mapped);
  EXPECT_EQ(r->mapped, sock.local());
  EXPECT_EQ(stunCount(cd, "answered"), 1);
}

TEST(ControldStunTest, AnswersOverIpv6) {
  UdpSocket probe("::1");
  if (!probe.ok()) GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
  ControldHarness::Options o;
  o.stun_listen = {"127.0.0.1:0", "[::1]:0"};
  ControldHarness cd(basicControldConfig(), o);
  cd.start();
  ASSERT_EQ(cd.stunAddresses().size(), 2u);
  EXPECT_EQ(cd.stunAddresses()[1].rfind("[::1]:", 0), 0u) << cd.stunAddresses()[1];
  auto r = stunBind(probe, cd.stunAddresses()[1]);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->mapped.v6);
  EXPECT_EQ(r->mapped, probe.local());
  UdpSocket v4("127.0.0.1");
  auto r4 = stunBind(v4, cd.stunAddresses()[0]);
  ASSERT_TRUE(r4);
  EXPECT_EQ(r4->mapped, v4.local());
}

TEST(ControldStunTest, AFloodFromOneSourceIsBoundedAndOthersAreStillAnswered) {
  ControldHarness cd(basicControldConfig());
  cd.start();
  const std::string server = cd.stunAddresses().at(0);
  UdpSocket flooder("127.0.0.1");
  ASSERT_TRUE(flooder.ok());
  auto start = std::chrono::steady_clock::now();
  int sent = 0;
  // 5000 requests in bursts of 250, each sent once the server has taken the ones before: an
  // unpaced flood overflows the kernel's per-CPU loopback backlog (netdev_max_backlog, 1000),
  // which every namespace shares, and makes tests running beside this one lose loopback
  // packets (their UDP and their gRPC's TCP alike). Still a hundred times the per-source bound.
  constexpr int kBurst = 250;
  int answers = 0;
  for (int i = 0; i < 5000; ++i) {
    if (flooder.send(server, stun::buildBindingRequest(stun::randomTransactionId()))) ++sent;
    if (i % kBurst == kBurst - 1) {
      ASSERT_TRUE(waitUntil(
          [&] {
            while (flooder.receive(0ms)) ++answers;
            return stunCount(cd, "answered") + stunCount(cd, "rate_limited") >= sent - kBurst;
          },
          scaled(5000ms), 1ms))
          << "the server did not take the previous burst";
    }
  }
  // Everything the server answers arrives; it is done once the counters stop moving.
  double seen = -1;
  ASSERT_TRUE(waitUntil(
      [&] {
        while (flooder.receive(0ms)) ++answers;
        double now = stunCount(cd, "answered") + stunCount(cd, "rate_limited");
        bool settled = now == seen && now > 0;
        seen = now;
        return settled;
      },
      scaled(20000ms), 200ms));
  while (flooder.receive(50ms)) ++answers;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The per-source bound: a burst of 50, then 20 a second.
  double bound = 50 + 20 * elapsed + 1;
  double limited = stunCount(cd, "rate_limited");
  double answered = stunCount(cd, "answered");
  EXPECT_GT(sent, 1000);
  EXPECT_GT(limited, 0) << "sent " << sent;
  EXPECT_LE(answered, bound) << "elapsed " << elapsed << " s";
  EXPECT_EQ(answers, static_cast<int>(answered));
  EXPECT_GE(answers, 50);
  std::printf("sent %d from one source in %.2f s: %.0f answered (bound %.0f), %.0f rate limited\n",
              sent, elapsed, answered, bound, limited);
  // Another source right after: answered.
  UdpSocket other("127.0.0.1");
  auto r = stunBind(other, server);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->mapped, other.local());
  EXPECT_NE(cd.log().find("STUN: rate limited (per-source limit)"), std::string::npos);
}

TEST(ControldStunTest, MalformedDatagramsAreCountedAndIgnored) {
  ControldHarness cd(basicControldConfig());
  cd.start();
  const std::string server = cd.stunAddresses().at(0);
  UdpSocket sock("127.0.0.1");
  auto id = stun::randomTransactionId();
  std::vector<uint8_t> truncated = stun::buildBindingRequest(id);
  truncated.resize(truncated.size() - 4);
  std::vector<uint8_t> wireguard(148, 0);
  wireguard[0] = 1;
  std::vector<std::vector<uint8_t>> bad = {
      {},                                                                  // empty
      std::vector<uint8_t>(100, 0xab),                                     // noise
      wireguard,                                                           // a handshake initiation
      truncated,                                                           // a cut request
      stun::buildBindingResponse(id, *wg::parseEndpoint("198.18.0.1:1")),  // not a request
  };
  for (const auto& d : bad) ASSERT_TRUE(sock.send(server, d));
  ASSERT_TRUE(waitUntil([&] { return stunCount(cd, "malformed") == 5; }, scaled(5000ms)));
  // Nothing was answered; a good request still is, and its answer is the first datagram back.
  EXPECT_EQ(stunCount(cd, "answered"), 0);
  auto good = stun::randomTransactionId();
  ASSERT_TRUE(sock.send(server, stun::buildBindingRequest(good)));
  auto d = sock.receive(scaled(5000ms));
  ASSERT_TRUE(d);
  auto r = stun::parseBindingResponse(*d);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->id, good);
  EXPECT_EQ(stunCount(cd, "answered"), 1);
}

TEST(ControldStunTest, TheDefaultRelayMapCarriesTheBoundStunPorts) {
  ControldHarness cd(basicControldConfig());
  cd.start();
  uint16_t port = portOf(cd.stunAddresses().at(0));
  ASSERT_NE(port, 0);
  ControlClient client(cd.controlUrl());
  auto ctx = callContext(cd.agentToken(), 10s);
  auto stream = client.overlay->StreamRelayMaps(ctx.get(), {});
  ov::RelayMap map;
  ASSERT_TRUE(stream->Read(&map));
  ASSERT_EQ(map.regions_size(), 1);
  ASSERT_EQ(map.regions(0).nodes_size(), 1);
  const auto& node = map.regions(0).nodes(0);
  ASSERT_EQ(node.stun_ports_size(), 1);
  EXPECT_EQ(node.stun_ports(0), port);
  EXPECT_EQ(node.stun_host(), "");  // the control server's host
  ctx->TryCancel();
  agent::v1::Manifest m;
  ASSERT_TRUE(client.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m).ok());
  ASSERT_EQ(m.relay_map().regions_size(), 1);
  ASSERT_EQ(m.relay_map().regions(0).nodes(0).stun_ports_size(), 1);
  EXPECT_EQ(m.relay_map().regions(0).nodes(0).stun_ports(0), port);
}

TEST(ControldStunTest, NoneTurnsStunOffAndAConfiguredMapIsServedAsWritten) {
  auto config = basicControldConfig();
  config["relay_map"] = {
      {"regions",
       {{{"region_id", 7},
         {"region_code", "far"},
         {"nodes",
          {{{"name", "r1"}, {"stun_host", "198.18.0.9"}, {"stun_ports", {3478, 3479}}}}}}}}};
  ControldHarness::Options o;
  o.stun_listen = {"none"};
  ControldHarness cd(config, o);
  cd.start();
  EXPECT_TRUE(cd.stunAddresses().empty());
  EXPECT_NE(cd.log().find("STUN off (--stun-listen none)"), std::string::npos);
  ControlClient client(cd.controlUrl());
  agent::v1::Manifest m;
  ASSERT_TRUE(client.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m).ok());
  ASSERT_EQ(m.relay_map().regions_size(), 1);
  const auto& node = m.relay_map().regions(0).nodes(0);
  EXPECT_EQ(node.stun_host(), "198.18.0.9");
  ASSERT_EQ(node.stun_ports_size(), 2);
  EXPECT_EQ(node.stun_ports(1), 3479u);
}

TEST(ControldStunTest, AnAddressInUseIsAnErrorNamingIt) {
  UdpSocket taken("127.0.0.1");
  ASSERT_TRUE(taken.ok());
  std::string addr = taken.local().toString();
  ControldHarness::Options o;
  o.stun_listen = {addr};
  ControldHarness cd(basicControldConfig(), o);
  EXPECT_THROW(cd.start(), std::runtime_error);
  EXPECT_NE(cd.log().find("--stun-listen " + addr), std::string::npos) << cd.log();
}

}  // namespace
}  // namespace wsa::test
