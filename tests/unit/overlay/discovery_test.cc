#include "wsa/overlay/discovery.h"

#include <gtest/gtest.h>

#include "wsa/overlay/v1/relay_map.pb.h"
#include "wsa/stun/stun.h"

namespace wsa::overlay {
namespace {

using namespace std::chrono_literals;

wg::Endpoint ep(const std::string& s) {
  auto e = wg::parseEndpoint(s);
  EXPECT_TRUE(e) << s;
  return e ? *e : wg::Endpoint{};
}

struct Sent {
  wg::Endpoint to;
  stun::TransactionId id;
};

class DiscoveryTest : public ::testing::Test {
 protected:
  void make(Discovery::Options o = {}) {
    d_ = std::make_unique<Discovery>(
        clock_, o,
        [this](const wg::Endpoint& to, std::span<const uint8_t> data) {
          auto r = stun::parseBindingRequest(data);
          ASSERT_TRUE(r) << r.error();
          sent_.push_back({to, r->id});
        },
        [this](const DiscoveryReport& r) { reports_.push_back(r); });
  }

  // The server that request `i` went to answers that it saw `mapped`.
  bool answer(size_t i, const std::string& mapped) {
    auto resp = stun::buildBindingResponse(sent_.at(i).id, ep(mapped));
    return d_->onDatagram(sent_.at(i).to, resp);
  }
  // Answers the requests sent since `from`, each seeing `mapped`.
  void answerAll(size_t from, const std::string& mapped) {
    for (size_t i = from; i < sent_.size(); ++i) answer(i, mapped);
  }

  ManualClock clock_;
  std::unique_ptr<Discovery> d_;
  std::vector<Sent> sent_;
  std::vector<DiscoveryReport> reports_;
  const wg::Endpoint a_ = ep("198.18.0.1:3478");
  const wg::Endpoint a2_ = ep("198.18.0.1:3479");
  const wg::Endpoint b_ = ep("198.18.1.1:3478");
};

TEST_F(DiscoveryTest, FirstRoundReportsThenOnlyChanges) {
  make();
  d_->setTargets({{1, a_}, {1, a2_}});
  EXPECT_TRUE(sent_.empty());  // not started
  d_->start();
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[0].to, a_);
  EXPECT_EQ(sent_[1].to, a2_);
  EXPECT_TRUE(d_->roundInProgress());
  EXPECT_FALSE(d_->last().complete);
  clock_.advance(10ms);
  EXPECT_TRUE(answer(0, "198.19.0.5:40000"));
  clock_.advance(4ms);
  EXPECT_TRUE(answer(1, "198.19.0.5:40000"));
  // Both answered: the round ended at once.
  EXPECT_FALSE(d_->roundInProgress());
  ASSERT_EQ(reports_.size(), 1u);
  const auto& r = reports_[0];
  EXPECT_TRUE(r.complete);
  ASSERT_EQ(r.reflexive.size(), 1u);
  EXPECT_EQ(r.reflexive[0].toString(), "198.19.0.5:40000");
  EXPECT_EQ(r.varies, MappingVaries::kNo);
  EXPECT_EQ(r.targets, 2u);
  EXPECT_EQ(r.answered, 2u);
  ASSERT_EQ(r.latency_ms.count(1), 1u);
  EXPECT_DOUBLE_EQ(r.latency_ms.at(1), 10.0);  // the better of 10 and 14
  // The next round 30 s later; the same answers are no news.
  clock_.advance(29s);
  EXPECT_EQ(sent_.size(), 2u);
  clock_.advance(1s);
  ASSERT_EQ(sent_.size(), 4u);
  clock_.advance(12ms);  // 10 -> 12 ms: within 20 % / 5 ms
  answerAll(2, "198.19.0.5:40000");
  EXPECT_EQ(reports_.size(), 1u);
  EXPECT_DOUBLE_EQ(d_->last().latency_ms.at(1), 12.0);
  EXPECT_EQ(d_->stats().rounds, 2u);
  EXPECT_EQ(d_->stats().requests, 4u);
  EXPECT_EQ(d_->stats().responses, 4u);
  EXPECT_EQ(d_->stats().timeouts, 0u);
}

TEST_F(DiscoveryTest, ChangesAreReported) {
  make();
  d_->setTargets({{1, a_}, {2, b_}});
  d_->start();
  clock_.advance(10ms);
  answerAll(0, "198.19.0.5:40000");
  ASSERT_EQ(reports_.size(), 1u);
  // Latency of region 2 from 10 to 40 ms: reported.
  clock_.advance(30s);
  clock_.advance(10ms);
  answer(2, "198.19.0.5:40000");
  clock_.advance(30ms);
  answer(3, "198.19.0.5:40000");
  ASSERT_EQ(reports_.size(), 2u);
  EXPECT_DOUBLE_EQ(reports_[1].latency_ms.at(2), 40.0);
  // A new reflexive address (the NAT rebooted): reported.
  clock_.advance(30s);
  answerAll(4, "198.19.0.6:40001");
  ASSERT_EQ(reports_.size(), 3u);
  EXPECT_EQ(reports_[2].reflexive.at(0).toString(), "198.19.0.6:40001");
}

TEST_F(DiscoveryTest, MappingVariesWhenServersSeeDifferentPorts) {
  make();
  d_->setTargets({{1, a_}, {2, b_}});
  d_->start();
  answer(1, "198.19.0.5:40002");  // b first
  answer(0, "198.19.0.5:40001");
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].varies, MappingVaries::kYes);
  ASSERT_EQ(reports_[0].reflexive.size(), 2u);
  EXPECT_EQ(reports_[0].reflexive[0].toString(), "198.19.0.5:40002");  // first seen first
  EXPECT_EQ(reports_[0].reflexive[1].toString(), "198.19.0.5:40001");
}

TEST_F(DiscoveryTest, FamiliesAreComparedApart) {
  make();
  const wg::Endpoint v6 = ep("[2001:db8::1]:3478");
  d_->setTargets({{1, a_}, {1, v6}});
  d_->start();
  answer(0, "198.19.0.5:40000");
  answer(1, "[2001:db8:ffff::5]:40000");
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].varies, MappingVaries::kUnknown);  // one answer per family
  EXPECT_EQ(reports_[0].reflexive.size(), 2u);
}

TEST_F(DiscoveryTest, ASilentTargetIsAskedAgainThenTimesOut) {
  make();
  d_->setTargets({{1, a_}, {2, b_}});
  d_->start();
  ASSERT_EQ(sent_.size(), 2u);
  answer(0, "198.19.0.5:40000");
  clock_.advance(999ms);
  EXPECT_EQ(sent_.size(), 2u);
  clock_.advance(1ms);  // timeout / 2: b again, a fresh transaction id
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(sent_[2].to, b_);
  EXPECT_NE(sent_[2].id, sent_[1].id);
  EXPECT_TRUE(reports_.empty());
  clock_.advance(1s);  // the round's timeout
  EXPECT_FALSE(d_->roundInProgress());
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].answered, 1u);
  EXPECT_EQ(reports_[0].varies, MappingVaries::kUnknown);
  EXPECT_EQ(reports_[0].latency_ms.count(2), 0u);
  EXPECT_EQ(d_->stats().timeouts, 1u);
  EXPECT_EQ(d_->stats().requests, 3u);
  // A late answer is not used.
  EXPECT_TRUE(answer(1, "198.19.0.9:1"));
  EXPECT_EQ(d_->stats().unmatched, 1u);
  EXPECT_EQ(d_->last().answered, 1u);
}

TEST_F(DiscoveryTest, TheRetryCountsAndItsRoundTripIsFromItsOwnSend) {
  make();
  d_->setTargets({{1, a_}});
  d_->start();
  clock_.advance(1s);
  ASSERT_EQ(sent_.size(), 2u);
  clock_.advance(20ms);
  answer(1, "198.19.0.5:40000");
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_DOUBLE_EQ(reports_[0].latency_ms.at(1), 20.0);
  EXPECT_TRUE(answer(0, "198.19.0.5:40000"));  // the first request's answer, late: unmatched
  EXPECT_EQ(d_->stats().unmatched, 1u);
}

TEST_F(DiscoveryTest, ForgedAndForeignDatagrams) {
  make();
  d_->setTargets({{1, a_}, {1, a2_}});
  d_->start();
  // An unknown transaction id, and a known one from another address: ignored, counted.
  auto forged = stun::buildBindingResponse(stun::randomTransactionId(), ep("203.0.113.1:1"));
  EXPECT_TRUE(d_->onDatagram(a_, forged));
  auto misdirected = stun::buildBindingResponse(sent_[0].id, ep("203.0.113.1:1"));
  EXPECT_TRUE(d_->onDatagram(ep("198.18.9.9:3478"), misdirected));
  EXPECT_EQ(d_->stats().unmatched, 2u);
  // Error responses and broken responses: consumed, counted as malformed.
  auto error = stun::buildBindingResponse(sent_[0].id, ep("203.0.113.1:1"), {"", false});
  error[1] = 0x11;
  EXPECT_TRUE(d_->onDatagram(a_, error));
  auto broken = stun::buildBindingResponse(sent_[0].id, ep("203.0.113.1:1"));
  broken[broken.size() - 1] ^= 1;  // FINGERPRINT
  EXPECT_TRUE(d_->onDatagram(a_, broken));
  EXPECT_EQ(d_->stats().malformed, 2u);
  // Not ours: WireGuard, probes, STUN requests.
  std::vector<uint8_t> wg(148, 0);
  wg[0] = 1;
  EXPECT_FALSE(d_->onDatagram(a_, wg));
  std::vector<uint8_t> probe = {'W', 'S', 'A', 0xf0, 0x9f, 0x92, 0, 0};
  EXPECT_FALSE(d_->onDatagram(a_, probe));
  EXPECT_FALSE(d_->onDatagram(a_, stun::buildBindingRequest(sent_[0].id)));
  EXPECT_FALSE(d_->onDatagram(a_, {}));
  // The real answers still count.
  answerAll(0, "198.19.0.5:40000");
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].reflexive.at(0).toString(), "198.19.0.5:40000");
  EXPECT_EQ(d_->stats().responses, 2u);
}

TEST_F(DiscoveryTest, RediscoverAndNewTargetsStartARoundNow) {
  make();
  d_->setTargets({{1, a_}, {1, a_}, {2, a_}});  // duplicates dropped, first region kept
  ASSERT_EQ(d_->targets().size(), 1u);
  EXPECT_EQ(d_->targets()[0].region, 1);
  d_->start();
  d_->start();  // idempotent
  ASSERT_EQ(sent_.size(), 1u);
  answer(0, "198.19.0.5:40000");
  clock_.advance(5s);
  d_->rediscover();
  ASSERT_EQ(sent_.size(), 2u);
  // A round in progress is abandoned for the new targets; its answers no longer count.
  d_->setTargets({{1, a_}, {2, b_}});
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_TRUE(answer(1, "198.19.0.5:40000"));
  EXPECT_EQ(d_->stats().unmatched, 1u);
  d_->setTargets({{1, a_}, {2, b_}});  // the same: nothing
  EXPECT_EQ(sent_.size(), 4u);
  answerAll(2, "198.19.0.5:40000");
  EXPECT_EQ(d_->last().answered, 2u);
  // The next round is `interval` after this one's end.
  clock_.advance(30s);
  EXPECT_EQ(sent_.size(), 6u);
}

TEST_F(DiscoveryTest, NoTargetsStillReportsAndStopStops) {
  make({.interval = 10s, .timeout = 1s, .retries = 0});
  d_->start();
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_TRUE(reports_[0].complete);
  EXPECT_EQ(reports_[0].targets, 0u);
  d_->setTargets({{1, a_}});
  ASSERT_EQ(sent_.size(), 1u);
  clock_.advance(1s);  // no retries: the round ends at the timeout
  EXPECT_EQ(sent_.size(), 1u);
  EXPECT_FALSE(d_->roundInProgress());
  EXPECT_EQ(reports_.size(), 1u);  // still nothing answered: no change
  d_->stop();
  clock_.advance(1h);
  EXPECT_EQ(sent_.size(), 1u);
  EXPECT_EQ(clock_.pendingTimers(), 0u);
}

TEST(DiscoverySyncTest, AnAnswerInsideSendIsFine) {
  ManualClock clock;
  Discovery* self = nullptr;
  std::vector<DiscoveryReport> reports;
  Discovery d(
      clock, {},
      [&](const wg::Endpoint& to, std::span<const uint8_t> data) {
        auto r = stun::parseBindingRequest(data);
        ASSERT_TRUE(r);
        EXPECT_TRUE(self->onDatagram(to, stun::buildBindingResponse(r->id, ep("198.19.0.5:1"))));
      },
      [&](const DiscoveryReport& r) { reports.push_back(r); });
  self = &d;
  d.setTargets({{1, ep("198.18.0.1:3478")}, {2, ep("198.18.1.1:3478")}});
  d.start();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].answered, 2u);
  EXPECT_EQ(reports[0].varies, MappingVaries::kNo);
  EXPECT_EQ(d.stats().requests, 2u);
}

TEST(StunTargetsTest, FromARelayMap) {
  v1::RelayMap map;
  auto* r1 = map.add_regions();
  r1->set_region_id(1);
  auto* n = r1->add_nodes();  // this server: the control host
  n->set_name("controld");
  n->add_stun_ports(3478);
  n->add_stun_ports(3479);
  auto* quiet = r1->add_nodes();  // no STUN
  quiet->set_name("quiet");
  auto* r2 = map.add_regions();
  r2->set_region_id(2);
  auto* u = r2->add_nodes();  // the host of its URL
  u->set_name("far");
  u->set_url("https://198.18.5.5:8443");
  u->add_stun_ports(3478);
  auto* h = r2->add_nodes();  // an explicit IPv6 host
  h->set_name("v6");
  h->set_stun_host("2001:db8::7");
  h->add_stun_ports(3478);
  auto* name = r2->add_nodes();  // a host name: skipped without resolution
  name->set_name("named");
  name->set_stun_host("relay.invalid");
  name->add_stun_ports(3478);
  auto* sock = r2->add_nodes();  // a unix URL has no host
  sock->set_name("sock");
  sock->set_url("unix:/run/x.sock");
  sock->add_stun_ports(3478);

  auto t = stunTargetsFromRelayMap(map, "198.18.0.1");
  ASSERT_EQ(t.targets.size(), 4u);
  EXPECT_EQ(t.targets[0], (StunTarget{1, ep("198.18.0.1:3478")}));
  EXPECT_EQ(t.targets[1], (StunTarget{1, ep("198.18.0.1:3479")}));
  EXPECT_EQ(t.targets[2], (StunTarget{2, ep("198.18.5.5:3478")}));
  EXPECT_EQ(t.targets[3], (StunTarget{2, ep("[2001:db8::7]:3478")}));
  ASSERT_EQ(t.skipped.size(), 2u);
  EXPECT_EQ(t.skipped[0], "region 2 node \"named\": relay.invalid is not an IP address");
  EXPECT_NE(t.skipped[1].find("node \"sock\""), std::string::npos);
  // A bracketed IPv6 control host works too.
  auto t6 = stunTargetsFromRelayMap(map, "[::1]");
  EXPECT_EQ(t6.targets.at(0).server.toString(), "[::1]:3478");
}

}  // namespace
}  // namespace wsa::overlay

namespace wsa::overlay {
namespace {

TEST(NearestRegion, TheLowestLatencyWinsAndNoneIsZero) {
  EXPECT_EQ(nearestRegion({}), 0);
  EXPECT_EQ(nearestRegion({{1, 12.5}, {2, 3.0}, {3, 40.0}}), 2);
  EXPECT_EQ(nearestRegion({{4, 7.0}}), 4);
}

}  // namespace
}  // namespace wsa::overlay
