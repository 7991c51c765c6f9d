// Relay tickets (sign, verify, tamper, keys, expiry, serials), the relay-only node's relay
// (TicketRelay: the pair rule, bounds, counters), the shared router, and the hub issuing tickets.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "controld/hub.h"
#include "controld/relay_router.h"
#include "controld/relay_ticket.h"
#include "controld/ticket_relay.h"
#include "support/util.h"
#include "wsa/common/clock.h"
#include "wsa/common/fs.h"
#include "wsa/common/metrics.h"

namespace wsa::controld {
namespace {

namespace ov = wsa::overlay::v1;
using namespace std::chrono_literals;

const std::string kA(32, 'A');
const std::string kB(32, 'B');
const std::string kC(32, 'C');

class FakeStream : public CoordinationSink, public RelaySink {
 public:
  explicit FakeStream(size_t capacity = 1000) : capacity_(capacity) {}
  bool pushCoordination(const ov::CoordinateResponse& r) override {
    coordination.push_back(r);
    return true;
  }
  bool pushPacket(const std::string& src, const std::string& payload) override {
    if (packets.size() >= capacity_) return false;
    packets.emplace_back(src, payload);
    return true;
  }
  void closeStream(const std::string& reason) override { closed = reason; }
  std::vector<ov::RelayTicket> tickets() const {
    std::vector<ov::RelayTicket> out;
    for (const auto& r : coordination) {
      if (r.has_relay_ticket()) out.push_back(r.relay_ticket());
    }
    return out;
  }

  std::vector<ov::CoordinateResponse> coordination;
  std::vector<std::pair<std::string, std::string>> packets;
  std::string closed;

 private:
  size_t capacity_;
};

int64_t unixMs(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

ov::RelayTicketBody body(const std::string& key, std::vector<std::string> may_reach,
                         int64_t not_after, uint64_t serial) {
  ov::RelayTicketBody b;
  b.set_key(key);
  for (auto& k : may_reach) b.add_may_reach(k);
  b.set_not_after_unix_ms(not_after);
  b.set_serial(serial);
  return b;
}

// --- tickets ---

class TicketTest : public ::testing::Test {
 protected:
  std::unique_ptr<RelayTicketSigner> signer = RelayTicketSigner::generate();
  std::unique_ptr<RelayTicketSigner> other = RelayTicketSigner::generate();
  RelayTicketVerifier verifier{std::vector<std::string>{signer->publicKey()}};
  const int64_t now = 1'700'000'000'000;
};

TEST_F(TicketTest, ASignedTicketVerifiesAndCarriesItsBody) {
  ASSERT_EQ(signer->publicKey().size(), 32u);
  EXPECT_EQ(signer->publicKeyBase64().size(), 44u);
  auto t = signer->sign(body(kA, {kB, kC}, now + 600'000, 7));
  EXPECT_EQ(t.signature().size(), 64u);
  ov::RelayTicketBody out;
  ASSERT_EQ(verifier.verify(t, kA, now, &out), TicketCheck::kAccepted);
  EXPECT_EQ(out.key(), kA);
  ASSERT_EQ(out.may_reach_size(), 2);
  EXPECT_EQ(out.may_reach(1), kC);
  EXPECT_EQ(out.serial(), 7u);
}

TEST_F(TicketTest, TamperingForgeryAndMissingTicketsAreRefused) {
  auto t = signer->sign(body(kA, {kB}, now + 600'000, 1));
  EXPECT_EQ(verifier.verify(ov::RelayTicket(), kA, now, nullptr), TicketCheck::kMissing);

  auto tampered = t;
  tampered.mutable_body()->back() ^= 1;
  EXPECT_EQ(verifier.verify(tampered, kA, now, nullptr), TicketCheck::kBadSignature);
  // A body that says "may reach C" with the signature of one that does not.
  tampered = t;
  tampered.set_body(body(kA, {kB, kC}, now + 600'000, 1).SerializeAsString());
  EXPECT_EQ(verifier.verify(tampered, kA, now, nullptr), TicketCheck::kBadSignature);
  tampered = t;
  (*tampered.mutable_signature())[10] ^= 1;
  EXPECT_EQ(verifier.verify(tampered, kA, now, nullptr), TicketCheck::kBadSignature);
  tampered.mutable_signature()->resize(63);
  EXPECT_EQ(verifier.verify(tampered, kA, now, nullptr), TicketCheck::kBadSignature);

  // Signed by a key the relay does not trust.
  auto forged = other->sign(body(kA, {kB}, now + 600'000, 1));
  EXPECT_EQ(verifier.verify(forged, kA, now, nullptr), TicketCheck::kBadSignature);
  // Rotation: a relay that trusts both keys takes both.
  RelayTicketVerifier both({signer->publicKey(), other->publicKey()});
  EXPECT_EQ(both.verify(forged, kA, now, nullptr), TicketCheck::kAccepted);
  EXPECT_EQ(both.verify(t, kA, now, nullptr), TicketCheck::kAccepted);
  // A relay that trusts no key takes nothing.
  RelayTicketVerifier none(std::vector<std::string>{});
  EXPECT_EQ(none.verify(t, kA, now, nullptr), TicketCheck::kBadSignature);
}

TEST_F(TicketTest, ATicketIsForItsKeyAndExpiresAfterTheSkew) {
  auto t = signer->sign(body(kA, {kB}, now, 1));
  EXPECT_EQ(verifier.verify(t, kB, now, nullptr), TicketCheck::kWrongKey);
  EXPECT_EQ(verifier.verify(t, kA, now + kRelayTicketSkewMs, nullptr), TicketCheck::kAccepted);
  EXPECT_EQ(verifier.verify(t, kA, now + kRelayTicketSkewMs + 1, nullptr), TicketCheck::kExpired);
}

TEST_F(TicketTest, TrustedKeysAreBase64AndBadOnesAreNamed) {
  auto v = RelayTicketVerifier::fromBase64({other->publicKeyBase64(), signer->publicKeyBase64()});
  ASSERT_TRUE(v) << v.error();
  EXPECT_EQ(v->keyCount(), 2u);
  auto bad = RelayTicketVerifier::fromBase64({signer->publicKeyBase64(), "c2hvcnQ="});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("relay trusted key 2"), std::string::npos) << bad.error();
  EXPECT_FALSE(RelayTicketVerifier::fromBase64({"not base64!"}));
  auto round = base64Decode(base64Encode("\x01\x02\x03\x04"));
  ASSERT_TRUE(round);
  EXPECT_EQ(*round, "\x01\x02\x03\x04");
}

TEST(TicketKeyFile, CreatedOnceWithMode0600AndRefusedWhenOthersMayReadIt) {
  test::TempDir dir;
  std::string path = dir.file("relay-signing.key");
  auto a = RelayTicketSigner::loadOrCreate(path);
  ASSERT_TRUE(a) << a.error();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto b = RelayTicketSigner::loadOrCreate(path);
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ((*a)->publicKey(), (*b)->publicKey());  // the same key after a restart

  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto c = RelayTicketSigner::loadOrCreate(path);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().find("chmod 600"), std::string::npos);

  std::string junk = dir.file("junk.key");
  ASSERT_TRUE(writeFileAtomic(junk, "not a key\n", 0600));
  EXPECT_FALSE(RelayTicketSigner::loadOrCreate(junk));
}

// --- the shared router ---

TEST(RelayRouterTest, BindsByKeyReplacesAndCountsEachOutcome) {
  RelayRouter r;
  auto s1 = std::make_shared<FakeStream>();
  auto s2 = std::make_shared<FakeStream>(/*capacity=*/1);
  auto s3 = std::make_shared<FakeStream>();
  EXPECT_EQ(r.bind(s1.get(), kA), nullptr);
  EXPECT_EQ(r.bind(s2.get(), kB), nullptr);
  auto yes = [](const auto&, const auto&) { return true; };
  auto no = [](const auto&, const auto&) { return false; };
  r.route(s1.get(), kB, "p1", yes);
  r.route(s1.get(), kB, "p2", yes);  // s2's queue holds one
  r.route(s1.get(), kB, "p3", no);
  r.route(s1.get(), kC, "p4", yes);
  r.route(s3.get(), kA, "p5", yes);  // unbound source
  ASSERT_EQ(s2->packets.size(), 1u);
  EXPECT_EQ(s2->packets[0], std::make_pair(kA, std::string("p1")));
  EXPECT_EQ(r.counters().relay_forwarded, 1u);
  EXPECT_EQ(r.counters().relay_queue_full, 1u);
  EXPECT_EQ(r.counters().relay_denied, 2u);
  EXPECT_EQ(r.counters().relay_no_route, 1u);

  // A newer stream for a key replaces the old one, which the caller closes.
  EXPECT_EQ(r.bind(s3.get(), kA), s1.get());
  EXPECT_EQ(r.binding(s1.get()), nullptr);
  EXPECT_EQ(r.sinkFor(kA), s3.get());
  EXPECT_FALSE(r.unbind(s1.get()));
  EXPECT_EQ(r.unbindKey(kA), s3.get());
  EXPECT_EQ(r.size(), 1u);
}

// --- the relay-only node ---

class TicketRelayTest : public ::testing::Test {
 protected:
  ov::RelayTicket ticket(const std::string& key, std::vector<std::string> may_reach,
                         uint64_t serial, Duration lifetime = 10min) {
    int64_t not_after = unixMs(clock.systemNow()) +
                        std::chrono::duration_cast<std::chrono::milliseconds>(lifetime).count();
    return signer->sign(body(key, std::move(may_reach), not_after, serial));
  }
  ov::RelayRequest hello(const std::string& key, const ov::RelayTicket& t) {
    ov::RelayRequest r;
    r.set_hello_key(key);
    *r.mutable_ticket() = t;
    return r;
  }
  std::shared_ptr<FakeStream> open(const std::string& key, const ov::RelayTicket& t,
                                   size_t capacity = 1000) {
    auto s = std::make_shared<FakeStream>(capacity);
    EXPECT_FALSE(relay->openRelayStream(s.get()));
    auto refused = relay->hello(s.get(), hello(key, t));
    EXPECT_FALSE(refused) << refused->message;
    return s;
  }

  ManualClock clock;
  std::unique_ptr<RelayTicketSigner> signer = RelayTicketSigner::generate();
  std::unique_ptr<TicketRelay> relay = std::make_unique<TicketRelay>(
      RelayTicketVerifier(std::vector<std::string>{signer->publicKey()}), clock, 8);
};

TEST_F(TicketRelayTest, HellosWithoutAGoodTicketAreRefusedAndCounted) {
  auto s = std::make_shared<FakeStream>();
  ASSERT_FALSE(relay->openRelayStream(s.get()));
  ov::RelayRequest bare;
  bare.set_hello_key(kA);
  auto r = relay->hello(s.get(), bare);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, RelayRefusal::Code::kPermissionDenied);
  EXPECT_EQ(relay->tickets(TicketCheck::kMissing), 1u);

  auto forged =
      RelayTicketSigner::generate()->sign(body(kA, {kB}, unixMs(clock.systemNow()) + 1000, 1));
  EXPECT_TRUE(relay->hello(s.get(), hello(kA, forged)));
  EXPECT_EQ(relay->tickets(TicketCheck::kBadSignature), 1u);
  EXPECT_TRUE(relay->hello(s.get(), hello(kB, ticket(kA, {kB}, 1))));
  EXPECT_EQ(relay->tickets(TicketCheck::kWrongKey), 1u);
  EXPECT_TRUE(relay->hello(s.get(), hello(kA, ticket(kA, {kB}, 1, -2min))));
  EXPECT_EQ(relay->tickets(TicketCheck::kExpired), 1u);
  EXPECT_EQ(relay->tickets(TicketCheck::kAccepted), 0u);

  // Nothing was bound: packets from it are denied.
  relay->relay(s.get(), kB, "x");
  EXPECT_EQ(relay->counters().relay_denied, 1u);
  relay->relayStreamDone(s.get());
  EXPECT_EQ(relay->openStreamCount(), 0u);
}

TEST_F(TicketRelayTest, ForwardsOnlyWhenBothTicketsListEachOther) {
  auto a = open(kA, ticket(kA, {kB, kC}, 1));
  auto b = open(kB, ticket(kB, {kA}, 2));
  auto c = open(kC, ticket(kC, {kA, kB}, 3));
  EXPECT_EQ(relay->tickets(TicketCheck::kAccepted), 3u);

  relay->relay(a.get(), kB, "a->b");
  relay->relay(b.get(), kA, "b->a");
  ASSERT_EQ(b->packets.size(), 1u);
  EXPECT_EQ(b->packets[0], std::make_pair(kA, std::string("a->b")));
  ASSERT_EQ(a->packets.size(), 1u);
  EXPECT_EQ(a->packets[0], std::make_pair(kB, std::string("b->a")));
  EXPECT_EQ(relay->counters().relay_forwarded, 2u);

  // C lists B, B does not list C: neither way.
  relay->relay(c.get(), kB, "c->b");
  relay->relay(b.get(), kC, "b->c");
  EXPECT_EQ(relay->counters().relay_denied, 2u);
  EXPECT_EQ(b->packets.size(), 1u);
  EXPECT_TRUE(c->packets.empty());

  // B's fresher ticket lists C: now both ways. An older one (a replay) changes nothing.
  EXPECT_EQ(relay->updateTicket(b.get(), ticket(kB, {kA, kC}, 4)), TicketCheck::kAccepted);
  relay->relay(c.get(), kB, "c->b");
  EXPECT_EQ(b->packets.size(), 2u);
  EXPECT_EQ(relay->updateTicket(b.get(), ticket(kB, {kA}, 4)), TicketCheck::kStale);
  EXPECT_EQ(relay->updateTicket(b.get(), ticket(kB, {kA}, 3)), TicketCheck::kStale);
  EXPECT_EQ(relay->updateTicket(b.get(), ticket(kA, {kB}, 9)), TicketCheck::kWrongKey);
  relay->relay(b.get(), kC, "b->c");
  EXPECT_EQ(c->packets.size(), 1u);
  EXPECT_EQ(relay->tickets(TicketCheck::kStale), 2u);

  // Unknown destinations are no_route.
  relay->relay(a.get(), std::string(32, 'Z'), "?");
  EXPECT_EQ(relay->counters().relay_no_route, 1u);
}

TEST_F(TicketRelayTest, ExpiredTicketsStopForwardingUntilRefreshed) {
  auto a = open(kA, ticket(kA, {kB}, 1, 10min));
  auto b = open(kB, ticket(kB, {kA}, 2, 1min));
  relay->relay(a.get(), kB, "1");
  EXPECT_EQ(b->packets.size(), 1u);
  clock.advance(1min + std::chrono::milliseconds(kRelayTicketSkewMs) + 1ms);
  relay->relay(a.get(), kB, "2");
  relay->relay(b.get(), kA, "3");
  EXPECT_EQ(b->packets.size(), 1u);
  EXPECT_TRUE(a->packets.empty());
  EXPECT_EQ(relay->counters().relay_denied, 2u);
  EXPECT_EQ(relay->updateTicket(b.get(), ticket(kB, {kA}, 5)), TicketCheck::kAccepted);
  relay->relay(a.get(), kB, "4");
  EXPECT_EQ(b->packets.size(), 2u);
}

TEST_F(TicketRelayTest, StreamsAndQueuesAreBounded) {
  std::vector<std::shared_ptr<FakeStream>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(std::make_shared<FakeStream>());
    ASSERT_FALSE(relay->openRelayStream(streams.back().get()));
  }
  auto extra = std::make_shared<FakeStream>();
  auto refused = relay->openRelayStream(extra.get());
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->code, RelayRefusal::Code::kResourceExhausted);
  EXPECT_EQ(relay->streamsRefused(), 1u);
  EXPECT_EQ(relay->openStreamCount(), 8u);
  metrics::Families f;
  relay->collectMetrics(f);
  std::string text = f.text();
  EXPECT_NE(text.find("wsa_controld_relay_streams 8"), std::string::npos) << text;
  EXPECT_NE(text.find("wsa_controld_relay_streams_refused_total 1"), std::string::npos);
  for (auto& s : streams) relay->relayStreamDone(s.get());
  streams.clear();

  // A full destination queue drops and counts.
  auto a = open(kA, ticket(kA, {kB}, 1));
  auto b = open(kB, ticket(kB, {kA}, 2), /*capacity=*/2);
  for (int i = 0; i < 3; ++i) relay->relay(a.get(), kB, "x");
  EXPECT_EQ(b->packets.size(), 2u);
  EXPECT_EQ(relay->counters().relay_queue_full, 1u);
  metrics::Families g;
  relay->collectMetrics(g);
  text = g.text();
  EXPECT_NE(text.find("wsa_controld_relay_packets_total{result=\"queue_full\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("wsa_controld_relay_tickets_total{result=\"accepted\"} 2"),
            std::string::npos);
}

TEST_F(TicketRelayTest, ANewerHelloReplacesTheStreamAndAnOlderOneIsStale) {
  auto a1 = open(kA, ticket(kA, {kB}, 5));
  auto a2 = open(kA, ticket(kA, {kB}, 6));
  EXPECT_EQ(a1->closed, "replaced by a newer relay stream");
  auto a0 = std::make_shared<FakeStream>();
  ASSERT_FALSE(relay->openRelayStream(a0.get()));
  auto r = relay->hello(a0.get(), hello(kA, ticket(kA, {kB}, 4)));
  ASSERT_TRUE(r);
  EXPECT_EQ(relay->tickets(TicketCheck::kStale), 1u);
  auto b = open(kB, ticket(kB, {kA}, 7));
  relay->relay(b.get(), kA, "to a");
  EXPECT_EQ(a2->packets.size(), 1u);
  EXPECT_TRUE(a1->packets.empty());
}

TEST_F(TicketRelayTest, ShutdownClosesStreamsAndRefusesNewOnes) {
  auto a = open(kA, ticket(kA, {kB}, 1));
  relay->shutdown("bye");
  EXPECT_EQ(a->closed, "bye");
  auto s = std::make_shared<FakeStream>();
  auto r = relay->openRelayStream(s.get());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, RelayRefusal::Code::kUnavailable);
}

// --- the control server issuing tickets ---

const std::string kAgentId = "11111111-1111-4111-8111-111111111111";

class HubTicketTest : public ::testing::Test {
 protected:
  HubTicketTest() {
    TicketIssuing t;
    t.signer = signer.get();
    t.now_unix_ms = [this] { return now; };
    t.lifetime_ms = 600'000;
    hub = std::make_unique<Hub>(
        std::vector<AgentIdentity>{
            {kAgentId, "dev", {"100.64.0.1/32", "fd7a:115c:a1e0:a::1/128"}, {"alice"}}},
        Hub::Callbacks{}, std::move(t));
  }
  static ov::CoordinateRequest updateSelf(const std::string& id, const std::string& key) {
    ov::CoordinateRequest r;
    auto* n = r.mutable_update_self()->mutable_node();
    n->set_id(id);
    n->set_key(key);
    return r;
  }
  ov::RelayTicketBody lastBody(const FakeStream& s, const std::string& key) {
    auto t = s.tickets();
    EXPECT_FALSE(t.empty());
    ov::RelayTicketBody b;
    if (t.empty()) return b;
    EXPECT_EQ(verifier.verify(t.back(), key, now, &b), TicketCheck::kAccepted);
    return b;
  }
  static std::set<std::string> reach(const ov::RelayTicketBody& b) {
    return {b.may_reach().begin(), b.may_reach().end()};
  }

  int64_t now = 1'700'000'000'000;
  std::unique_ptr<RelayTicketSigner> signer = RelayTicketSigner::generate();
  RelayTicketVerifier verifier{std::vector<std::string>{signer->publicKey()}};
  std::unique_ptr<Hub> hub;
  Principal agent{Principal::Kind::kAgent, "dev", kAgentId};
  Principal alice{Principal::Kind::kUser, "alice", ""};
};

TEST_F(HubTicketTest, PeersGetTicketsListingTheirTunnelsAndFreshOnesOnChange) {
  auto a = std::make_shared<FakeStream>();
  auto c = std::make_shared<FakeStream>();
  hub->coordinate(a.get(), agent, updateSelf("", kA));
  ASSERT_EQ(a->tickets().size(), 1u);
  auto ab = lastBody(*a, kA);
  EXPECT_TRUE(reach(ab).empty());
  EXPECT_EQ(ab.not_after_unix_ms(), now + 600'000);

  auto client = hub->issueClient("alice");
  hub->coordinate(c.get(), alice, updateSelf(client.id, kC));
  EXPECT_EQ(a->tickets().size(), 1u);  // no tunnel yet: nothing changed for the agent
  ov::CoordinateRequest tunnel;
  tunnel.mutable_add_tunnel()->set_id(kAgentId);
  hub->coordinate(c.get(), alice, tunnel);
  EXPECT_EQ(reach(lastBody(*a, kA)), std::set<std::string>{kC});
  EXPECT_EQ(reach(lastBody(*c, kC)), std::set<std::string>{kA});
  uint64_t serial = lastBody(*c, kC).serial();

  // Republishing the same node sends no ticket; a new key does, to both sides.
  size_t before = a->tickets().size() + c->tickets().size();
  hub->coordinate(c.get(), alice, updateSelf(client.id, kC));
  EXPECT_EQ(a->tickets().size() + c->tickets().size(), before);
  hub->coordinate(c.get(), alice, updateSelf(client.id, kB));
  EXPECT_EQ(reach(lastBody(*a, kA)), std::set<std::string>{kB});
  auto cb = lastBody(*c, kB);
  EXPECT_EQ(reach(cb), std::set<std::string>{kA});
  EXPECT_GT(cb.serial(), serial);

  // The sweep reissues only past half-life.
  now += 299'000;
  EXPECT_EQ(hub->refreshTickets(), 0u);
  now += 1'000;
  EXPECT_EQ(hub->refreshTickets(), 2u);
  EXPECT_EQ(lastBody(*a, kA).not_after_unix_ms(), now + 600'000);

  // The client leaves: the agent's ticket no longer lists it.
  hub->coordinationEnded(c.get());
  EXPECT_TRUE(reach(lastBody(*a, kA)).empty());
  EXPECT_GE(hub->ticketsIssued(), 7u);
}

TEST(HubWithoutTickets, IssuesNone) {
  Hub hub({{kAgentId, "dev", {"100.64.0.1/32"}, {"alice"}}}, Hub::Callbacks{});
  auto a = std::make_shared<FakeStream>();
  ov::CoordinateRequest r;
  r.mutable_update_self()->mutable_node()->set_key(kA);
  hub.coordinate(a.get(), Principal{Principal::Kind::kAgent, "dev", kAgentId}, r);
  EXPECT_TRUE(a->tickets().empty());
  EXPECT_EQ(hub.refreshTickets(), 0u);
}

}  // namespace
}  // namespace wsa::controld
