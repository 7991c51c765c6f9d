// The NAT lab (support/nat_lab.h) proves itself: two hosts behind MASQUERADE routers punch a
// UDP hole to each other's reflexive addresses (learned from a toy STUN server in inet), two
// behind --random-fully routers cannot, the UDP block stops it and lifting it lets it through,
// the routers let their hosts out and nothing new in, public servers get their own namespaces,
// and delays lengthen round trips and hold a bounded number of packets.

#include "support/nat_lab.h"

#include <gtest/gtest.h>

#include <regex>

#include "support/process.h"
#include "support/util.h"

namespace wsa::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kReflector = "198.18.0.1:3478";

class NatLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = natLabUnavailableReason(); !why.empty()) GTEST_SKIP() << why;
  }

  // The toy STUN server in inet (answers with the source address it saw).
  std::unique_ptr<Process> startReflector(const NatLab& lab, NatLab::Node node,
                                          const std::string& listen) {
    Process::Options o;
    std::string ready = dir_.file("reflect" + std::to_string(reflectors_++) + ".ready");
    o.argv = {natLabHelperPath(), "reflect", "--listen", listen, "--ready", ready};
    o.stderr_path = dir_.file("reflect.log");
    auto p = lab.start(node, o);
    EXPECT_TRUE(waitForReadyFile(*p, ready, scaled(5s))) << readText(o.stderr_path);
    return p;
  }

  struct PunchResult {
    int code_a = -1, code_b = -1;
    std::string out_a, out_b;
    std::string reflexive_a, reflexive_b;
  };

  // Host A and host B each learn their reflexive address on UDP port 40000, read the other's,
  // and send to it at the same time.
  PunchResult punch(const NatLab& lab, const std::string& round) {
    PunchResult r;
    std::string self_a = dir_.file(round + ".A"), self_b = dir_.file(round + ".B");
    auto start = [&](NatLab::Node host, const std::string& self, const std::string& peer,
                     const std::string& out) {
      Process::Options o;
      o.argv = {natLabHelperPath(), "punch",    "--bind",       "0.0.0.0:40000",
                "--reflector",      kReflector, "--self",       self,
                "--peer",           peer,       "--timeout-ms", "4000"};
      o.stdout_path = out;
      o.stderr_path = out;
      return lab.start(host, o);
    };
    std::string out_a = dir_.file(round + ".A.out"), out_b = dir_.file(round + ".B.out");
    auto a = start(NatLab::kHostA, self_a, self_b, out_a);
    auto b = start(NatLab::kHostB, self_b, self_a, out_b);
    r.code_a = a->wait(scaled(10s)).value_or(-1);
    r.code_b = b->wait(scaled(10s)).value_or(-1);
    r.out_a = readText(out_a);
    r.out_b = readText(out_b);
    r.reflexive_a = std::string(trimView(readText(self_a)));
    r.reflexive_b = std::string(trimView(readText(self_b)));
    return r;
  }

  TempDir dir_;
  int reflectors_ = 0;
};

// The round-trip time ping reports for one echo, in ms; -1 when it got none.
double pingMs(const NatLab& lab, NatLab::Node from, const std::string& to) {
  auto r = lab.run(from, {"ping", "-c", "1", "-W", "2", to}, scaled(10s));
  std::smatch m;
  if (r.code != 0 || !std::regex_search(r.output, m, std::regex("time=([0-9.]+) ms"))) return -1;
  return std::stod(m[1].str());
}

TEST_F(NatLabTest, EasyNatsOnBothSidesLetSimultaneousSendsThrough) {
  NatLab lab({.a = NatMode::kEasy, .b = NatMode::kEasy});
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto reflector = startReflector(lab, NatLab::kInet, kReflector);
  auto r = punch(lab, "easy");
  EXPECT_EQ(r.code_a, 0) << r.out_a;
  EXPECT_EQ(r.code_b, 0) << r.out_b;
  EXPECT_NE(r.out_a.find("direct"), std::string::npos) << r.out_a;
  // Each host is seen at its NAT's wan address; MASQUERADE kept the port it had free.
  EXPECT_EQ(r.reflexive_a, "198.18.1.2:40000");
  EXPECT_EQ(r.reflexive_b, "198.18.2.2:40000");
}

TEST_F(NatLabTest, HardNatsOnBothSidesDefeatHolePunching) {
  NatLab lab({.a = NatMode::kHard, .b = NatMode::kHard});
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto reflector = startReflector(lab, NatLab::kInet, kReflector);
  auto r = punch(lab, "hard");
  EXPECT_EQ(r.code_a, 1) << r.out_a;
  EXPECT_EQ(r.code_b, 1) << r.out_b;
  EXPECT_EQ(r.reflexive_a.rfind("198.18.1.2:", 0), 0u) << r.reflexive_a;
  EXPECT_EQ(r.reflexive_b.rfind("198.18.2.2:", 0), 0u) << r.reflexive_b;
}

TEST_F(NatLabTest, TheUdpBlockStopsEverythingBetweenTheNatsUntilLifted) {
  NatLab lab({.a = NatMode::kEasy, .b = NatMode::kEasy});
  ASSERT_TRUE(lab.ok()) << lab.error();
  auto reflector = startReflector(lab, NatLab::kInet, kReflector);
  ASSERT_TRUE(lab.blockUdpBetweenNats(true)) << lab.error();
  EXPECT_TRUE(lab.udpBlocked());
  auto blocked = punch(lab, "blocked");
  EXPECT_EQ(blocked.code_a, 1) << blocked.out_a;
  EXPECT_EQ(blocked.code_b, 1) << blocked.out_b;
  // The reflector in inet was still reachable: only host-to-host UDP is blocked.
  EXPECT_EQ(blocked.reflexive_a, "198.18.1.2:40000");
  // Traffic to inet is untouched.
  EXPECT_LT(pingMs(lab, NatLab::kHostA, "198.18.0.1"), 1000);

  ASSERT_TRUE(lab.blockUdpBetweenNats(false)) << lab.error();
  auto lifted = punch(lab, "lifted");
  EXPECT_EQ(lifted.code_a, 0) << lifted.out_a;
  EXPECT_EQ(lifted.code_b, 0) << lifted.out_b;
}

TEST_F(NatLabTest, RoutersLetTheirHostsOutAndNothingNewIn) {
  NatLab lab({.a = NatMode::kEasy, .b = NatMode::kHard, .tag = "f"});
  ASSERT_TRUE(lab.ok()) << lab.error();
  EXPECT_GE(pingMs(lab, NatLab::kHostA, "198.18.0.1"), 0) << "host A through NAT A to inet";
  EXPECT_GE(pingMs(lab, NatLab::kHostB, "198.18.0.1"), 0) << "host B through NAT B to inet";
  // Unsolicited traffic to a router's wan address is dropped; its lan is not routed from inet.
  EXPECT_LT(pingMs(lab, NatLab::kInet, lab.address(NatLab::kNatA)), 0);
  EXPECT_LT(pingMs(lab, NatLab::kInet, lab.address(NatLab::kHostA)), 0);
  EXPECT_LT(pingMs(lab, NatLab::kHostA, lab.address(NatLab::kNatB)), 0);
}

TEST_F(NatLabTest, ARoutedSideIsReachableFromInet) {
  NatLab lab({.a = NatMode::kNone, .b = NatMode::kEasy, .tag = "r"});
  ASSERT_TRUE(lab.ok()) << lab.error();
  EXPECT_GE(pingMs(lab, NatLab::kInet, lab.address(NatLab::kHostA)), 0);
  EXPECT_GE(pingMs(lab, NatLab::kHostB, lab.address(NatLab::kHostA)), 0);
  EXPECT_LT(pingMs(lab, NatLab::kHostA, lab.address(NatLab::kHostB)), 0);
}

TEST_F(NatLabTest, ServersHaveTheirOwnNamespacesAndDelayedLinks) {
  NatLab lab({.a = NatMode::kEasy, .b = NatMode::kEasy, .tag = "s"});
  ASSERT_TRUE(lab.ok()) << lab.error();
  NatLab::Node near = lab.addServer("198.18.0.2");
  NatLab::Node far = lab.addServer("198.18.0.3");
  ASSERT_TRUE(lab.ok()) << lab.error();
  ASSERT_GT(near, NatLab::kHostB);
  ASSERT_GT(far, near);
  EXPECT_EQ(lab.address(far), "198.18.0.3");
  EXPECT_EQ(lab.addServer("198.18.0.3"), -1) << "an address in use";
  EXPECT_EQ(lab.addServer("198.18.5.1"), -1) << "not a public address";
  EXPECT_FALSE(lab.ok());

  ASSERT_TRUE(lab.setDelay(far, 100ms)) << lab.error();
  double near_ms = pingMs(lab, NatLab::kHostA, "198.18.0.2");
  double far_ms = pingMs(lab, NatLab::kHostB, "198.18.0.3");
  EXPECT_GE(near_ms, 0);
  EXPECT_LT(near_ms, 50);
  EXPECT_GE(far_ms, 100);
  EXPECT_LT(far_ms, 1000);
  EXPECT_GE(lab.delayStats(far).packets, 1u);
  EXPECT_EQ(lab.delayStats(far).dropped, 0u);

  // A server answers from its public address: the reflector there sees host A at NAT A's.
  auto reflector = startReflector(lab, near, "0.0.0.0:3478");
  std::string self = dir_.file("server.self");
  auto r = lab.run(
      NatLab::kHostA,
      {natLabHelperPath(), "punch", "--bind", "0.0.0.0:40001", "--reflector", "198.18.0.2:3478",
       "--self", self, "--peer", dir_.file("none"), "--timeout-ms", "1000"},
      scaled(10s));
  EXPECT_EQ(r.code, 4) << r.output;  // learned its address, then no peer
  EXPECT_EQ(trimView(readText(self)), "198.18.1.2:40001");

  // Delays on a host's link and on a NAT's wan add up on the way.
  ASSERT_TRUE(lab.setDelay(NatLab::kHostA, 30ms)) << lab.error();
  ASSERT_TRUE(lab.setDelay(NatLab::kNatA, 40ms)) << lab.error();
  double host_ms = pingMs(lab, NatLab::kHostA, "198.18.0.2");
  EXPECT_GE(host_ms, 70);
  EXPECT_LT(host_ms, 1000);
  // Zero removes a delay; kInet has no link to delay.
  ASSERT_TRUE(lab.setDelay(far, 0ms)) << lab.error();
  EXPECT_LT(pingMs(lab, NatLab::kHostB, "198.18.0.3"), 50);
  EXPECT_EQ(lab.delayStats(far).packets, 0u);
  EXPECT_FALSE(lab.setDelay(NatLab::kInet, 10ms));
}

TEST_F(NatLabTest, ADelayHoldsAtMostItsQueueLimitAndCountsTheRest) {
  NatLab lab({.a = NatMode::kEasy, .b = NatMode::kEasy, .tag = "q"});
  ASSERT_TRUE(lab.ok()) << lab.error();
  NatLab::Node server = lab.addServer("198.18.0.2");
  ASSERT_TRUE(lab.ok()) << lab.error();
  // Resolve every neighbour on the way first, so the burst is not queued behind ARP.
  ASSERT_GE(pingMs(lab, NatLab::kHostA, "198.18.0.2"), 0);
  ASSERT_TRUE(lab.setDelay(server, 300ms, 5)) << lab.error();

  std::string ready = dir_.file("count.ready"), out = dir_.file("count.out");
  Process::Options o;
  o.argv = {natLabHelperPath(), "count", "--listen", "198.18.0.2:9000",
            "--for-ms",         "1500",  "--ready",  ready};
  o.stdout_path = out;
  auto counter = lab.start(server, o);
  ASSERT_TRUE(waitForReadyFile(*counter, ready, scaled(5s)));
  auto burst = lab.run(NatLab::kHostA,
                       {natLabHelperPath(), "burst", "--to", "198.18.0.2:9000", "--count", "50"});
  ASSERT_EQ(burst.code, 0) << burst.output;
  ASSERT_TRUE(counter->wait(scaled(10s)).has_value());
  EXPECT_EQ(std::string(trimView(readText(out))), "5");
  auto stats = lab.delayStats(server);
  EXPECT_EQ(stats.packets, 5u);
  EXPECT_EQ(stats.dropped, 45u);
}

TEST_F(NatLabTest, EverythingIsDeletedWithTheLab) {
  std::vector<std::string> names;
  {
    NatLab lab({.a = NatMode::kHard, .b = NatMode::kNone, .tag = "d"});
    ASSERT_TRUE(lab.ok()) << lab.error();
    NatLab::Node server = lab.addServer("198.18.0.9");
    ASSERT_TRUE(lab.setDelay(server, 10ms)) << lab.error();
    for (NatLab::Node n :
         {NatLab::kInet, NatLab::kNatA, NatLab::kHostA, NatLab::kNatB, NatLab::kHostB, server}) {
      names.push_back(lab.ns(n));
    }
    auto list = run({"ip", "netns", "list"}, scaled(10s)).output;
    for (const auto& n : names) EXPECT_NE(list.find(n), std::string::npos) << n;
  }
  auto list = run({"ip", "netns", "list"}, scaled(10s)).output;
  for (const auto& n : names) EXPECT_EQ(list.find(n), std::string::npos) << n;
  NatLab bad({.tag = "toolong"});
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace wsa::test
