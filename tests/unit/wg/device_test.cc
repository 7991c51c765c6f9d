// Two WireGuard engines in one process, joined by a simulated network the test controls, on a
// manual clock: handshakes, transport, every timer, roaming, cookies and hostile input, without
// waiting for real time.

#include "wsa/wg/device.h"

#include <gtest/gtest.h>

#include <cstring>
#include <deque>

#include "wg/messages.h"
#include "wsa/common/clock.h"

namespace wsa::wg {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Datagram {
  Endpoint from, to;
  std::vector<uint8_t> bytes;
};

// An IPv4 packet from src to dst carrying `payload` (the engine checks version, length and
// addresses, not checksums).
std::vector<uint8_t> ipv4(const char* src, const char* dst, const std::string& payload) {
  std::vector<uint8_t> p(20 + payload.size(), 0);
  p[0] = 0x45;
  p[2] = static_cast<uint8_t>(p.size() >> 8);
  p[3] = static_cast<uint8_t>(p.size());
  p[8] = 64;
  p[9] = 17;
  std::memcpy(&p[12], parsePrefix(src)->addr.data(), 4);
  std::memcpy(&p[16], parsePrefix(dst)->addr.data(), 4);
  std::memcpy(&p[20], payload.data(), payload.size());
  return p;
}

std::vector<uint8_t> ipv6(const char* src, const char* dst, const std::string& payload) {
  std::vector<uint8_t> p(40 + payload.size(), 0);
  p[0] = 0x60;
  p[4] = static_cast<uint8_t>(payload.size() >> 8);
  p[5] = static_cast<uint8_t>(payload.size());
  p[6] = 17;
  p[7] = 64;
  std::memcpy(&p[8], parsePrefix(src)->addr.data(), 16);
  std::memcpy(&p[24], parsePrefix(dst)->addr.data(), 16);
  std::memcpy(&p[40], payload.data(), payload.size());
  return p;
}

std::string payloadOf(const std::vector<uint8_t>& ip) {
  size_t off = (ip[0] >> 4) == 4 ? 20 : 40;
  return std::string(ip.begin() + static_cast<long>(off), ip.end());
}

class Node {
 public:
  Node(ManualClock& clock, std::deque<Datagram>& wire, const char* address, DeviceOptions o)
      : endpoint(*parseEndpoint(address)),
        device(clock, o,
               Device::Io{[this, &wire](const Endpoint& to, std::span<const uint8_t> d) {
                            wire.push_back({this->endpoint, to, {d.begin(), d.end()}});
                          },
                          [this](std::span<const uint8_t> pkt) {
                            received.emplace_back(pkt.begin(), pkt.end());
                          }}) {
    key = generatePrivateKey();
    device.setPrivateKey(key);
  }
  Endpoint endpoint;
  Secret key;
  Device device;
  std::vector<std::vector<uint8_t>> received;
};

class WgDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { build(DeviceOptions{}); }

  void build(DeviceOptions o) { build(o, o); }
  void build(DeviceOptions oa, DeviceOptions ob) {
    wire_.clear();
    a_ = std::make_unique<Node>(clock_, wire_, "198.18.0.1:51820", oa);
    b_ = std::make_unique<Node>(clock_, wire_, "198.18.0.2:51821", ob);
    PeerConfig pa;  // a's view of b
    pa.public_key = b_->device.publicKey();
    pa.endpoint = b_->endpoint;
    pa.allowed_ips =
        std::vector<Prefix>{*parsePrefix("100.64.0.2/32"), *parsePrefix("fd7a:115c:a1e0::2/128")};
    ASSERT_TRUE(a_->device.setPeer(pa));
    PeerConfig pb;  // b's view of a: no endpoint (it learns it)
    pb.public_key = a_->device.publicKey();
    pb.allowed_ips =
        std::vector<Prefix>{*parsePrefix("100.64.0.1/32"), *parsePrefix("fd7a:115c:a1e0::1/128")};
    ASSERT_TRUE(b_->device.setPeer(pb));
  }

  Node* nodeAt(const Endpoint& e) {
    if (e == a_->endpoint) return a_.get();
    if (e == b_->endpoint) return b_.get();
    return nullptr;
  }

  // Delivers everything on the wire (and what that causes), optionally filtering.
  size_t pump(const std::function<bool(Datagram&)>& keep = nullptr) {
    size_t n = 0;
    while (!wire_.empty() && n < 10000) {
      Datagram d = std::move(wire_.front());
      wire_.pop_front();
      ++n;
      if (keep && !keep(d)) continue;
      if (Node* to = nodeAt(d.to)) to->device.receive(d.from, d.bytes);
    }
    return n;
  }

  // Steps in small increments so that timers and the traffic they cause interleave; `keep`
  // filters the wire as in pump().
  void advance(Duration d, const std::function<bool(Datagram&)>& keep = nullptr) {
    auto step = milliseconds(100);
    while (d > Duration::zero()) {
      auto s = std::min<Duration>(d, step);
      clock_.advance(s);
      pump(keep);
      d -= s;
    }
  }

  void handshake() {
    a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "hello"));
    pump();
  }

  uint64_t dropped(Node& n, Drop d) { return n.device.counters().dropped(d); }

  ManualClock clock_;
  std::deque<Datagram> wire_;
  std::unique_ptr<Node> a_, b_;
};

TEST_F(WgDeviceTest, HandshakeThenDataBothWays) {
  handshake();
  ASSERT_EQ(b_->received.size(), 1u);  // staged until the handshake, then sent
  EXPECT_EQ(payloadOf(b_->received[0]), "hello");
  EXPECT_EQ(a_->device.counters().handshakes_completed, 1u);
  EXPECT_EQ(b_->device.counters().handshakes_completed, 1u);
  // b learned a's endpoint from the authenticated initiation and can answer.
  b_->device.send(ipv6("fd7a:115c:a1e0::2", "fd7a:115c:a1e0::1", "over v6"));
  pump();
  ASSERT_EQ(a_->received.size(), 1u);
  EXPECT_EQ(payloadOf(a_->received[0]), "over v6");
  auto st = a_->device.peer(b_->device.publicKey());
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->last_handshake.has_value());
  EXPECT_EQ(st->tx_packets, 1u);
  EXPECT_EQ(st->rx_packets, 1u);
  EXPECT_GT(st->rx_bytes, 0u);
  EXPECT_EQ(b_->device.peer(a_->device.publicKey())->endpoint, a_->endpoint);
  // One handshake, one session each (the responder's confirmed by the first data packet).
  EXPECT_EQ(a_->device.counters().initiations_sent, 1u);
  EXPECT_EQ(a_->device.sessionCount(), 1u);
  EXPECT_EQ(b_->device.sessionCount(), 1u);
}

TEST_F(WgDeviceTest, PaddingKeepsInnerLengthAndDatagramsAreMultiplesOf16) {
  handshake();
  wire_.clear();
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "x"));  // 21-byte packet
  ASSERT_EQ(wire_.size(), 1u);
  EXPECT_EQ(wire_.front().bytes.size(), kDataHeaderSize + 32 + 16);
  pump();
  EXPECT_EQ(b_->received.back().size(), 21u);
}

TEST_F(WgDeviceTest, WrongKeysNeverCompleteAHandshake) {
  // b does not know a: the initiation decrypts a's static key, but no such peer exists.
  b_->device.removePeer(a_->device.publicKey());
  handshake();
  EXPECT_EQ(a_->device.counters().handshakes_completed, 0u);
  EXPECT_EQ(dropped(*b_, Drop::kBadHandshake), 1u);
  // A peer configured with the wrong public key for b: mac1 already fails.
  build(DeviceOptions{});
  PeerConfig wrong;
  wrong.public_key = publicKeyOf(generatePrivateKey());
  wrong.endpoint = b_->endpoint;
  wrong.allowed_ips = std::vector<Prefix>{*parsePrefix("100.64.0.3/32")};
  ASSERT_TRUE(a_->device.setPeer(wrong));
  a_->device.send(ipv4("100.64.0.1", "100.64.0.3", "nope"));
  pump();
  EXPECT_EQ(dropped(*b_, Drop::kBadMac1), 1u);
  EXPECT_EQ(b_->device.counters().handshakes_completed, 0u);
}

TEST_F(WgDeviceTest, LostInitiationIsRetransmittedThenGivenUp) {
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "lost"));
  // Drop everything a sends: it retries every 5 s (+ jitter) for 90 s, then gives up.
  advance(seconds(200), [](Datagram&) { return false; });
  uint64_t initiations = a_->device.counters().initiations_sent;
  EXPECT_GE(initiations, 17u);
  EXPECT_LE(initiations, 20u);
  EXPECT_EQ(dropped(*a_, Drop::kHandshakeGaveUp), 1u);  // the staged packet
  // After giving up, new traffic starts again.
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "again"));
  pump();
  ASSERT_EQ(b_->received.size(), 1u);
  EXPECT_EQ(payloadOf(b_->received[0]), "again");
}

TEST_F(WgDeviceTest, FirstInitiationLostSecondSucceedsAfterRekeyTimeout) {
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "late"));
  pump([](Datagram&) { return false; });
  advance(seconds(4));
  EXPECT_TRUE(b_->received.empty());
  advance(seconds(2));  // 5 s + jitter (≤ 333 ms)
  ASSERT_EQ(b_->received.size(), 1u);
  EXPECT_EQ(a_->device.counters().initiations_sent, 2u);
}

TEST_F(WgDeviceTest, KeepaliveAfterReceivingWithoutSending) {
  handshake();
  uint64_t before = b_->device.counters().keepalives_sent;
  advance(seconds(9));
  EXPECT_EQ(b_->device.counters().keepalives_sent, before);
  advance(seconds(2));  // KEEPALIVE_TIMEOUT (10 s) after b received data and sent nothing
  EXPECT_EQ(b_->device.counters().keepalives_sent, before + 1);
  // Nothing more while idle.
  advance(seconds(30));
  EXPECT_EQ(b_->device.counters().keepalives_sent, before + 1);
}

TEST_F(WgDeviceTest, NewHandshakeWhenSentDataGetsNoAnswer) {
  handshake();
  advance(seconds(11));  // b's keepalive has come and gone
  uint64_t initiations = a_->device.counters().initiations_sent;
  // a sends; b's answers are lost: after KEEPALIVE + REKEY_TIMEOUT (15 s) a starts a handshake.
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "anyone?"));
  auto from_a = [&](Datagram& d) { return d.from == a_->endpoint; };
  advance(seconds(14), from_a);
  EXPECT_EQ(a_->device.counters().initiations_sent, initiations);
  advance(seconds(2), from_a);
  EXPECT_EQ(a_->device.counters().initiations_sent, initiations + 1);
}

TEST_F(WgDeviceTest, RekeyAfterTimeKeepsTrafficFlowingAndLosesNothing) {
  handshake();
  int sent = 1;
  // Traffic every second for 5 minutes: rekeys happen (REKEY_AFTER_TIME 120 s) and every
  // packet arrives, in both directions.
  for (int i = 0; i < 300; ++i) {
    a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "a" + std::to_string(i)));
    b_->device.send(ipv4("100.64.0.2", "100.64.0.1", "b" + std::to_string(i)));
    ++sent;
    advance(seconds(1));
  }
  EXPECT_EQ(b_->received.size(), static_cast<size_t>(sent));
  EXPECT_EQ(a_->received.size(), static_cast<size_t>(sent - 1));
  EXPECT_GE(a_->device.counters().handshakes_completed, 3u);
  EXPECT_LE(a_->device.counters().handshakes_completed, 4u);
  EXPECT_EQ(dropped(*a_, Drop::kBadAuth) + dropped(*b_, Drop::kBadAuth), 0u);
  EXPECT_LE(a_->device.sessionCount(), 3u);  // previous, current, next at most
}

TEST_F(WgDeviceTest, ForcedRekeyMidStreamLosesNothing) {
  handshake();
  clock_.advance(seconds(1));  // a new initiation must carry a newer timestamp
  for (int i = 0; i < 50; ++i) {
    a_->device.send(ipv4("100.64.0.1", "100.64.0.2", std::to_string(i)));
    if (i == 20) a_->device.initiateHandshake(b_->device.publicKey());
    // Deliver with a delay of one round: packets under the old session cross the handshake.
    if (i % 2 == 0) pump();
  }
  pump();
  EXPECT_EQ(b_->received.size(), 51u);
  EXPECT_EQ(a_->device.counters().handshakes_completed, 2u);
  EXPECT_EQ(a_->device.counters().rekeys, 1u);
  EXPECT_EQ(b_->device.counters().rekeys, 1u);
}

TEST_F(WgDeviceTest, KeysAreZeroedAfterThreeRejectTimes) {
  handshake();
  EXPECT_GT(a_->device.sessionCount(), 0u);
  advance(seconds(539));
  EXPECT_GT(a_->device.sessionCount(), 0u);
  advance(seconds(2));
  EXPECT_EQ(a_->device.sessionCount(), 0u);
  EXPECT_EQ(b_->device.sessionCount(), 0u);
  // And traffic simply starts a new handshake.
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "fresh"));
  pump();
  EXPECT_EQ(payloadOf(b_->received.back()), "fresh");
}

TEST_F(WgDeviceTest, ExpiredSessionIsNotUsed) {
  handshake();
  // Nothing sent for longer than REJECT_AFTER_TIME: the old session must not carry data.
  advance(seconds(181));
  wire_.clear();
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "after expiry"));
  ASSERT_EQ(wire_.size(), 1u);
  EXPECT_EQ(wire_.front().bytes[0], kMsgInitiation);
  pump();
  EXPECT_EQ(payloadOf(b_->received.back()), "after expiry");
}

TEST_F(WgDeviceTest, PersistentKeepalive) {
  PeerConfig c;
  c.public_key = b_->device.publicKey();
  c.persistent_keepalive = seconds(25);
  ASSERT_TRUE(a_->device.setPeer(c));  // turning it on sends at once (a handshake first)
  pump();
  EXPECT_EQ(a_->device.counters().handshakes_completed, 1u);
  uint64_t k = a_->device.counters().keepalives_sent;
  advance(seconds(24));
  EXPECT_EQ(a_->device.counters().keepalives_sent, k);
  advance(seconds(2));
  EXPECT_EQ(a_->device.counters().keepalives_sent, k + 1);
  advance(seconds(50));
  EXPECT_EQ(a_->device.counters().keepalives_sent, k + 3);
}

TEST_F(WgDeviceTest, RoamingFollowsAuthenticatedPacketsOnly) {
  handshake();
  // a moves to a new address: b follows once an authenticated packet arrives from it.
  Endpoint moved = *parseEndpoint("198.18.7.7:40000");
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "from elsewhere"));
  ASSERT_EQ(wire_.size(), 1u);
  const std::vector<uint8_t> original = wire_.front().bytes;
  wire_.clear();
  std::vector<uint8_t> copy = original;  // receive() decrypts in place
  b_->device.receive(moved, copy);
  EXPECT_EQ(b_->device.peer(a_->device.publicKey())->endpoint, moved);
  // A forged packet (fresh counter, no valid tag) from a third address does not move it.
  Endpoint attacker = *parseEndpoint("198.18.9.9:1234");
  std::vector<uint8_t> forged = original;
  writeLe64(&forged[kDataCounterOffset], readLe64(&forged[kDataCounterOffset]) + 1000);
  b_->device.receive(attacker, forged);
  EXPECT_EQ(b_->device.peer(a_->device.publicKey())->endpoint, moved);
  EXPECT_EQ(dropped(*b_, Drop::kBadAuth), 1u);
  // A replayed genuine packet from the attacker: refused too.
  copy = original;
  b_->device.receive(attacker, copy);
  EXPECT_EQ(b_->device.peer(a_->device.publicKey())->endpoint, moved);
  EXPECT_EQ(dropped(*b_, Drop::kReplay), 1u);
}

TEST_F(WgDeviceTest, ReplayedInitiationIsRefused) {
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "x"));
  ASSERT_EQ(wire_.size(), 1u);
  Datagram init = wire_.front();
  pump();
  ASSERT_EQ(b_->device.counters().handshakes_completed, 1u);
  uint64_t responses = b_->device.counters().responses_sent;
  clock_.advance(seconds(1));
  b_->device.receive(init.from, init.bytes);  // same timestamp
  EXPECT_EQ(dropped(*b_, Drop::kStaleTimestamp), 1u);
  EXPECT_EQ(b_->device.counters().responses_sent, responses);
}

TEST_F(WgDeviceTest, RetryHandshakeResendsALostInitiationOnlyWhenOldEnough) {
  const auto key = b_->device.publicKey();
  EXPECT_FALSE(a_->device.retryHandshake(key, milliseconds(250)));  // never initiated
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "staged"));
  ASSERT_EQ(wire_.size(), 1u);
  wire_.clear();  // the initiation is lost (the old path)
  clock_.advance(milliseconds(100));
  EXPECT_FALSE(a_->device.retryHandshake(key, milliseconds(250)));  // its answer may be coming
  clock_.advance(milliseconds(200));
  EXPECT_TRUE(a_->device.retryHandshake(key, milliseconds(250)));  // well before REKEY_TIMEOUT
  ASSERT_EQ(wire_.size(), 1u);
  EXPECT_EQ(wire_.front().bytes[0], kMsgInitiation);
  pump();
  EXPECT_TRUE(a_->device.peer(key)->has_session);
  EXPECT_EQ(b_->received.size(), 1u);  // the staged packet went out over the new session
  clock_.advance(seconds(1));
  EXPECT_FALSE(a_->device.retryHandshake(key, milliseconds(250)));  // a session exists
}

TEST_F(WgDeviceTest, PinnedEndpointsDoNotRoamButAnswerHandshakesWhereTheyCameFrom) {
  PeerConfig pin;
  pin.public_key = a_->device.publicKey();
  pin.endpoint = *parseEndpoint("198.18.7.7:7");  // b sends to a stand-in a never sees
  pin.roaming = false;
  ASSERT_TRUE(b_->device.setPeer(pin));
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "hello"));
  pump();
  // The response went back to a's real endpoint, so a has a session...
  EXPECT_TRUE(a_->device.peer(b_->device.publicKey())->has_session);
  // ...but b still points at the endpoint it was given.
  EXPECT_EQ(b_->device.peer(a_->device.publicKey())->endpoint.toString(), "198.18.7.7:7");
}

TEST_F(WgDeviceTest, InitiationFloodFromOnePeerIsDropped) {
  a_->device.initiateHandshake(b_->device.publicKey());
  clock_.advance(milliseconds(30));  // a new timestamp slot
  a_->device.initiateHandshake(b_->device.publicKey());
  ASSERT_EQ(wire_.size(), 2u);
  Datagram first = wire_[0], second = wire_[1];
  wire_.clear();
  b_->device.receive(first.from, first.bytes);
  b_->device.receive(second.from, second.bytes);  // 0 ms later at b: flood
  EXPECT_EQ(dropped(*b_, Drop::kHandshakeFlood), 1u);
}

TEST_F(WgDeviceTest, UnderLoadHandshakesNeedACookie) {
  DeviceOptions o;
  o.under_load_handshakes_per_second = 0;  // b is always under load
  build(DeviceOptions{}, o);
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "with cookie"));
  // Initiation without mac2 → cookie reply; a stores the cookie; its retry carries mac2.
  pump();
  EXPECT_EQ(b_->device.counters().cookie_replies_sent, 1u);
  EXPECT_EQ(a_->device.counters().cookie_replies_received, 1u);
  EXPECT_EQ(b_->device.counters().handshakes_completed, 0u);
  advance(seconds(6));  // the retransmission carries a valid mac2
  EXPECT_EQ(a_->device.counters().handshakes_completed, 1u);
  EXPECT_EQ(payloadOf(b_->received.at(0)), "with cookie");
  // A cookie reply that does not decrypt is dropped.
  std::vector<uint8_t> bogus(kCookieReplySize, 0);
  bogus[0] = kMsgCookieReply;
  writeLe32(&bogus[4], 12345);
  a_->device.receive(b_->endpoint, bogus);
  EXPECT_EQ(dropped(*a_, Drop::kUnknownIndex), 1u);
}

TEST_F(WgDeviceTest, UnderLoadSourcesAreRateLimited) {
  DeviceOptions o;
  o.under_load_handshakes_per_second = 0;
  o.handshakes_per_source_per_second = 1;
  o.timing.min_initiation_interval = Duration::zero();
  build(DeviceOptions{}, o);
  // Get a cookie first.
  a_->device.initiateHandshake(b_->device.publicKey());
  pump();
  ASSERT_EQ(a_->device.counters().cookie_replies_received, 1u);
  // A burst of valid (mac2) initiations from one source: 5 pass (the burst), then refused.
  for (int i = 0; i < 10; ++i) {
    clock_.advance(milliseconds(20));
    a_->device.initiateHandshake(b_->device.publicKey());
    pump([](Datagram& d) { return d.bytes[0] == kMsgInitiation; });
  }
  EXPECT_EQ(dropped(*b_, Drop::kRateLimited), 5u);
}

TEST_F(WgDeviceTest, MalformedPacketsAreDroppedAndCounted) {
  handshake();
  Endpoint x = *parseEndpoint("198.18.3.3:3333");
  auto feed = [&](std::vector<uint8_t> bytes) { b_->device.receive(x, bytes); };
  feed({});
  feed({1});
  feed({9, 0, 0, 0, 1, 2, 3});  // unknown type
  feed({1, 1, 0, 0});           // reserved bytes set
  feed([] {
    std::vector<uint8_t> v(100, 0);
    v[0] = 1;
    return v;
  }());
  feed([] {
    std::vector<uint8_t> v(kInitiationSize, 0xab);
    v[0] = 1;
    v[1] = v[2] = v[3] = 0;
    return v;
  }());
  feed([] {
    std::vector<uint8_t> v(kResponseSize + 1, 0);
    v[0] = 2;
    return v;
  }());
  feed([] {
    std::vector<uint8_t> v(20, 0);
    v[0] = 4;
    return v;
  }());  // data too short
  feed([] {
    std::vector<uint8_t> v(64, 0);
    v[0] = 4;
    writeLe32(&v[4], 77);
    return v;
  }());
  const auto& c = b_->device.counters();
  EXPECT_EQ(c.dropped(Drop::kShort), 5u);
  EXPECT_EQ(c.dropped(Drop::kUnknownType), 2u);
  EXPECT_EQ(c.dropped(Drop::kBadMac1), 1u);
  EXPECT_EQ(c.dropped(Drop::kUnknownIndex), 1u);
  EXPECT_TRUE(b_->received.size() == 1u);
  // A huge garbage datagram: no allocation in proportion, just a drop.
  std::vector<uint8_t> big(65535, 4);
  big[1] = big[2] = big[3] = 0;
  b_->device.receive(x, big);
  EXPECT_EQ(c.dropped(Drop::kUnknownIndex), 2u);
}

TEST_F(WgDeviceTest, InnerPacketsAreCheckedAgainstAllowedIps) {
  handshake();
  // b sends a packet whose source is not in b's allowed IPs at a: a drops it.
  PeerConfig c;
  c.public_key = a_->device.publicKey();
  c.allowed_ips = std::vector<Prefix>{*parsePrefix("100.64.0.0/24")};
  ASSERT_TRUE(b_->device.setPeer(c));
  b_->device.send(ipv4("100.64.0.9", "100.64.0.1", "spoofed source"));
  pump();
  EXPECT_TRUE(a_->received.empty());
  EXPECT_EQ(dropped(*a_, Drop::kSourceNotAllowed), 1u);
  // Not an IP packet inside: dropped as bad.
  b_->device.send(ipv4("100.64.0.2", "100.64.0.1", "fine"));
  pump();
  EXPECT_EQ(a_->received.size(), 1u);
  // Outgoing packets for no peer.
  a_->device.send(ipv4("100.64.0.1", "198.18.1.1", "nowhere"));
  EXPECT_EQ(dropped(*a_, Drop::kNoRoute), 1u);
  a_->device.send(std::vector<uint8_t>{0x45, 0});
  EXPECT_EQ(dropped(*a_, Drop::kBadPacket), 1u);
}

TEST_F(WgDeviceTest, StagedQueueIsBounded) {
  DeviceOptions o;
  o.max_staged_per_peer = 4;
  build(o);
  for (int i = 0; i < 10; ++i) a_->device.send(ipv4("100.64.0.1", "100.64.0.2", std::to_string(i)));
  EXPECT_EQ(dropped(*a_, Drop::kStagedOverflow), 6u);
  pump();
  ASSERT_EQ(b_->received.size(), 4u);
  EXPECT_EQ(payloadOf(b_->received[0]), "6");  // the oldest went first
  EXPECT_EQ(payloadOf(b_->received[3]), "9");
}

TEST_F(WgDeviceTest, PeersChangeAtRunTimeWithoutDisturbingOthers) {
  handshake();
  // A third peer added to a and removed again; the a–b session is untouched.
  Secret third = generatePrivateKey();
  PeerConfig c;
  c.public_key = publicKeyOf(third);
  c.endpoint = *parseEndpoint("198.18.0.3:1");
  c.allowed_ips = std::vector<Prefix>{*parsePrefix("100.64.0.3/32")};
  ASSERT_TRUE(a_->device.setPeer(c));
  EXPECT_EQ(a_->device.peers().size(), 2u);
  EXPECT_TRUE(a_->device.removePeer(c.public_key));
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "still here"));
  pump();
  EXPECT_EQ(payloadOf(b_->received.back()), "still here");
  EXPECT_EQ(a_->device.counters().initiations_sent, 1u);
  // Allowed IPs replaced: the old address no longer routes.
  PeerConfig ch;
  ch.public_key = b_->device.publicKey();
  ch.allowed_ips = std::vector<Prefix>{*parsePrefix("100.64.5.0/24")};
  ASSERT_TRUE(a_->device.setPeer(ch));
  a_->device.send(ipv4("100.64.0.1", "100.64.0.2", "old route"));
  EXPECT_EQ(dropped(*a_, Drop::kNoRoute), 1u);
  // Our own key cannot be a peer.
  PeerConfig self;
  self.public_key = a_->device.publicKey();
  EXPECT_FALSE(a_->device.setPeer(self));
}

TEST_F(WgDeviceTest, PresharedKeyMustMatch) {
  PeerConfig c;
  c.public_key = b_->device.publicKey();
  Secret psk = generatePrivateKey();
  c.preshared_key = psk;
  ASSERT_TRUE(a_->device.setPeer(c));
  handshake();  // b has no psk: the response does not open at a
  EXPECT_EQ(a_->device.counters().handshakes_completed, 0u);
  EXPECT_EQ(dropped(*a_, Drop::kBadHandshake), 1u);
  PeerConfig cb;
  cb.public_key = a_->device.publicKey();
  cb.preshared_key = psk;
  ASSERT_TRUE(b_->device.setPeer(cb));
  advance(seconds(6));  // retransmission
  EXPECT_EQ(a_->device.counters().handshakes_completed, 1u);
  EXPECT_EQ(payloadOf(b_->received.at(0)), "hello");
}

}  // namespace
}  // namespace wsa::wg
