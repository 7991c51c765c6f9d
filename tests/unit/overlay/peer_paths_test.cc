// overlay::PeerPaths between two peers over a simulated network on a ManualClock: the relay
// first, the move to a direct path when probes confirm one, the fall back to the relay when it
// stops answering, remapped ports, policies, and what is dropped (and counted).

#include "wsa/overlay/peer_paths.h"

#include <gtest/gtest.h>

#include <deque>

#include "overlay/probe.h"
#include "wsa/wg/relay_endpoints.h"

namespace wsa::overlay {
namespace {

using namespace std::chrono_literals;

wg::Endpoint ep(const char* text) {
  return *wg::parseEndpoint(text);
}

// Two peers, A and B. A's socket is seen by B as `a_public` (its NAT's mapping); B's as
// `b_public`. Datagrams take `delay` each way; `blocked` drops every direct one. Relay
// stand-ins carry datagrams to the other side as from the sender's stand-in.
class Net {
 public:
  struct Side {
    wg::RelayEndpoints relay;
    std::unique_ptr<PeerPaths> paths;
    wg::Secret key = wg::generatePrivateKey();
    wg::PublicKey pub = wg::publicKeyOf(key);
    wg::Endpoint device_endpoint;  // what set_endpoint last said
    uint64_t traffic = 0;
    uint64_t sent_direct = 0, sent_relay = 0;
  };

  explicit Net(PathPolicy a_policy = {}, PathPolicy b_policy = {}) {
    make(0, a_policy);
    make(1, b_policy);
  }

  void make(int i, PathPolicy policy) {
    Side& s = side[i];
    PeerPaths::Io io;
    io.send = [this, i](const wg::Endpoint& to, std::span<const uint8_t> d) { send(i, to, d); };
    io.relay_endpoint = [this, i](const wg::PublicKey& k) { return side[i].relay.endpointFor(k); };
    io.set_endpoint = [this, i](const wg::PublicKey&, const wg::Endpoint& e) {
      side[i].device_endpoint = e;
    };
    io.traffic = [this, i](const wg::PublicKey&) { return side[i].traffic; };
    s.paths = std::make_unique<PeerPaths>(clock, PathTiming{}, io, "test");
    s.paths->setKey(s.key);
    s.paths->setPolicy(policy);
  }

  void send(int from, const wg::Endpoint& to, std::span<const uint8_t> d) {
    int other = 1 - from;
    std::vector<uint8_t> copy(d.begin(), d.end());
    if (wg::RelayEndpoints::isRelay(to)) {
      ++side[from].sent_relay;
      if (!relay_up) return;
      wg::Endpoint src = side[other].relay.endpointFor(side[from].pub);
      queue.push_back({clock.now() + delay * 3, other, src, std::move(copy)});
      return;
    }
    ++side[from].sent_direct;
    if (blocked || !(to == public_of[other])) return;
    queue.push_back({clock.now() + delay, other, public_of[from], std::move(copy)});
  }

  // Runs the clock for `d`, delivering datagrams when due.
  void run(Duration d) {
    MonoTime end = clock.now() + d;
    while (clock.now() < end) {
      Duration step = std::min<Duration>(1ms, end - clock.now());
      clock.advance(step);
      while (!queue.empty() && queue.front().at <= clock.now()) {
        auto q = std::move(queue.front());
        queue.pop_front();
        side[q.to].paths->receive(q.from, q.data);
      }
    }
  }

  // Both learn each other, with B's published candidates `b_candidates` (A's are A's public).
  void introduce(std::vector<wg::Endpoint> b_candidates) {
    side[0].paths->upsertPeer(side[1].pub, b_candidates);
    side[1].paths->upsertPeer(side[0].pub, {public_of[0]});
  }

  Path path(int i) {
    auto v = side[i].paths->peer(side[1 - i].pub);
    return v ? v->path : Path::kNone;
  }

  struct Datagram {
    MonoTime at;
    int to;
    wg::Endpoint from;
    std::vector<uint8_t> data;
  };
  ManualClock clock;
  Side side[2];
  wg::Endpoint public_of[2] = {ep("198.18.1.2:41000"), ep("198.18.2.2:42000")};
  Duration delay = 5ms;
  bool blocked = false;
  bool relay_up = true;
  std::deque<Datagram> queue;
};

TEST(PeerPaths, StartsOnTheRelayAndMovesDirectWhenAProbeIsAnswered) {
  Net net;
  net.blocked = true;
  net.introduce({net.public_of[1]});
  EXPECT_EQ(net.path(0), Path::kRelay);
  EXPECT_TRUE(wg::RelayEndpoints::isRelay(net.side[0].device_endpoint));
  net.run(2s);
  EXPECT_EQ(net.path(0), Path::kRelay);  // nothing direct gets through
  net.blocked = false;
  // The next burst (within rediscover_idle at the latest, here the running burst or a new one
  // once traffic flows) finds the direct path.
  net.side[0].traffic = 1;
  net.side[1].traffic = 1;
  net.run(12s);
  EXPECT_EQ(net.path(0), Path::kDirect);
  EXPECT_EQ(net.path(1), Path::kDirect);
  EXPECT_EQ(net.side[0].device_endpoint, net.public_of[1]);
  EXPECT_EQ(net.side[1].device_endpoint, net.public_of[0]);
  auto v = net.side[0].paths->peer(net.side[1].pub);
  ASSERT_TRUE(v->latency_ms);
  EXPECT_NEAR(*v->latency_ms, 10.0, 2.0);  // 5 ms each way
  EXPECT_EQ(net.side[0].paths->stats().to_direct, 1u);
}

TEST(PeerPaths, PongsArrivingTogetherChangeThePathOnce) {
  Net net;
  net.blocked = true;
  net.side[0].traffic = 1;
  net.introduce({net.public_of[1]});
  net.run(2s);  // pings pile up unanswered (blocked), none timed out yet
  // The way opens and every answer lands in the same instant.
  net.blocked = false;
  net.delay = 0ms;
  net.run(600ms);
  EXPECT_EQ(net.path(0), Path::kDirect);
  EXPECT_EQ(net.side[0].paths->stats().to_direct, 1u);
  EXPECT_EQ(net.side[0].paths->stats().path_changes, 1u);
}

TEST(PeerPaths, DirectWithinOneRoundTripWhenTheWayIsOpen) {
  Net net;
  net.introduce({net.public_of[1]});
  net.run(50ms);
  EXPECT_EQ(net.path(0), Path::kDirect);
  EXPECT_EQ(net.path(1), Path::kDirect);
}

TEST(PeerPaths, FallsBackToTheRelayWithinFiveSecondsWhenTheDirectPathStopsAnswering) {
  Net net;
  net.introduce({net.public_of[1]});
  net.run(100ms);
  ASSERT_EQ(net.path(0), Path::kDirect);
  // Traffic flows (heartbeats every 1.5 s), then the direct path goes dark.
  for (int i = 0; i < 10; ++i) {
    ++net.side[0].traffic;
    net.run(300ms);
  }
  ASSERT_EQ(net.path(0), Path::kDirect);
  net.blocked = true;
  MonoTime blocked_at = net.clock.now();
  while (net.path(0) == Path::kDirect && net.clock.now() - blocked_at < 10s) {
    ++net.side[0].traffic;
    net.run(50ms);
  }
  EXPECT_EQ(net.path(0), Path::kRelay);
  EXPECT_LT(net.clock.now() - blocked_at, 5s);
  EXPECT_TRUE(wg::RelayEndpoints::isRelay(net.side[0].device_endpoint));
  // Probing goes on: unblocked, the path comes back.
  net.blocked = false;
  for (int i = 0; i < 60 && net.path(0) != Path::kDirect; ++i) {
    ++net.side[0].traffic;
    net.run(250ms);
  }
  EXPECT_EQ(net.path(0), Path::kDirect);
  EXPECT_GE(net.side[0].paths->stats().path_changes, 2u);
}

TEST(PeerPaths, IdleDirectPathIsKeptAliveByHeartbeats) {
  Net net;
  net.introduce({net.public_of[1]});
  net.run(100ms);
  ASSERT_EQ(net.path(0), Path::kDirect);
  uint64_t before = net.side[0].paths->stats().pings_sent;
  net.run(61s);
  EXPECT_EQ(net.path(0), Path::kDirect);
  uint64_t pings = net.side[0].paths->stats().pings_sent - before;
  EXPECT_GE(pings, 3u);   // every 20 s
  EXPECT_LE(pings, 10u);  // and not more often while idle
}

TEST(PeerPaths, APongFromAnUnpublishedPortBecomesTheDirectPath) {
  Net net;
  // B publishes a stale port; its NAT maps it elsewhere (public_of[1]). A's pings to the
  // stale port go nowhere, but B's pings to A arrive from the real mapping: A pings it back.
  net.introduce({ep("198.18.2.2:1")});
  net.run(1s);
  EXPECT_EQ(net.path(0), Path::kDirect);
  EXPECT_EQ(net.side[0].device_endpoint, net.public_of[1]);
  auto v = net.side[0].paths->peer(net.side[1].pub);
  bool learned = false;
  for (const auto& c : v->candidates) {
    if (c.endpoint == net.public_of[1] && !c.published && c.latency_ms) learned = true;
  }
  EXPECT_TRUE(learned);
}

TEST(PeerPaths, DirectOffMeansRelayOnlyAndNotOneProbe) {
  Net net(PathPolicy{.direct = false, .relay = true}, PathPolicy{.direct = false, .relay = true});
  net.introduce({net.public_of[1]});
  for (int i = 0; i < 40; ++i) {
    ++net.side[0].traffic;
    net.run(250ms);
  }
  EXPECT_EQ(net.path(0), Path::kRelay);
  EXPECT_EQ(net.side[0].paths->stats().pings_sent, 0u);
  EXPECT_EQ(net.side[0].paths->stats().call_me_maybe_sent, 0u);
  EXPECT_EQ(net.side[0].sent_direct + net.side[0].sent_relay, 0u);
}

TEST(PeerPaths, RelayOffUsesTheFirstCandidateUntilConfirmed) {
  Net net(PathPolicy{.direct = true, .relay = false}, PathPolicy{});
  net.introduce({net.public_of[1]});
  EXPECT_EQ(net.side[0].device_endpoint, net.public_of[1]);
  EXPECT_EQ(net.path(0), Path::kNone);
  net.run(50ms);
  EXPECT_EQ(net.path(0), Path::kDirect);
  EXPECT_EQ(net.side[0].sent_relay, 0u);  // not even call-me-maybe
}

TEST(PeerPaths, PingReportsThePathAndLatency) {
  Net net;
  net.blocked = true;
  net.introduce({net.public_of[1]});
  std::optional<PeerPaths::Pong> got;
  bool called = false;
  net.side[0].paths->ping(net.side[1].pub, [&](std::optional<PeerPaths::Pong> p) {
    got = p;
    called = true;
  });
  net.run(100ms);
  ASSERT_TRUE(called);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->path, Path::kRelay);
  EXPECT_NEAR(got->latency_ms, 30.0, 3.0);  // the simulated relay: 15 ms each way
  net.relay_up = false;
  called = false;
  net.side[0].paths->ping(net.side[1].pub, [&](std::optional<PeerPaths::Pong> p) {
    got = p;
    called = true;
  });
  net.run(3s);
  EXPECT_TRUE(called);
  EXPECT_FALSE(got);  // timed out
}

TEST(PeerPaths, ProbesFromStrangersAndForgeriesAreDroppedAndCounted) {
  Net net;
  net.introduce({net.public_of[1]});
  PeerPaths& a = *net.side[0].paths;
  // A stranger's well-formed ping (its own key): not a peer.
  wg::Secret stranger = wg::generatePrivateKey();
  auto shared = *probe::sharedKey(stranger, net.side[0].pub);
  probe::Message ping;
  ping.txid = probe::newTxId();
  auto d = probe::seal(wg::publicKeyOf(stranger), shared, ping);
  a.receive(ep("198.18.9.9:9"), d);
  EXPECT_EQ(a.stats().dropped(ProbeDrop::kUnknownSender), 1u);
  // A ping that claims B's key but was sealed with the stranger's: does not open.
  auto forged = probe::seal(net.side[1].pub, shared, ping);
  a.receive(ep("198.18.9.9:9"), forged);
  EXPECT_EQ(a.stats().dropped(ProbeDrop::kBadAuth), 1u);
  // Truncated, and a pong for no ping of ours.
  a.receive(ep("198.18.9.9:9"), std::span(d).first(20));
  EXPECT_EQ(a.stats().dropped(ProbeDrop::kMalformed), 1u);
  auto b_shared = *probe::sharedKey(net.side[1].key, net.side[0].pub);
  probe::Message pong;
  pong.type = probe::Type::kPong;
  pong.txid = probe::newTxId();
  pong.observed = net.public_of[0];
  a.receive(net.public_of[1], probe::seal(net.side[1].pub, b_shared, pong));
  EXPECT_EQ(a.stats().dropped(ProbeDrop::kUnmatchedPong), 1u);
  EXPECT_EQ(a.stats().pongs_sent, 0u);  // nothing answered the stranger
}

TEST(PeerPaths, CandidatesAreBounded) {
  Net net;
  std::vector<wg::Endpoint> many;
  for (int i = 1; i <= 40; ++i) many.push_back(ep(("198.18.5.1:" + std::to_string(i)).c_str()));
  net.side[0].paths->upsertPeer(net.side[1].pub, many);
  auto v = net.side[0].paths->peer(net.side[1].pub);
  EXPECT_EQ(v->candidates.size(), PeerPaths::kMaxCandidates);
}

TEST(PeerPaths, OutstandingPingsAreBounded) {
  Net net;
  net.blocked = true;
  net.relay_up = false;
  std::vector<wg::Endpoint> many;
  for (int i = 1; i <= 32; ++i) many.push_back(ep(("198.18.5.1:" + std::to_string(i)).c_str()));
  net.side[0].paths->upsertPeer(net.side[1].pub, many);
  net.run(2s);  // bursts of 32 pings every 500 ms, none answered, timeouts 2.5 s
  const auto& s = net.side[0].paths->stats();
  EXPECT_GT(s.dropped(ProbeDrop::kPendingFull), 0u);
  EXPECT_LE(s.pings_sent, PeerPaths::kMaxPending + 0u);
}

TEST(ProbeMessages, SealedRoundTripAndTamperingFails) {
  wg::Secret a = wg::generatePrivateKey(), b = wg::generatePrivateKey();
  auto ka = *probe::sharedKey(a, wg::publicKeyOf(b));
  auto kb = *probe::sharedKey(b, wg::publicKeyOf(a));
  EXPECT_EQ(ka.bytes(), kb.bytes());
  probe::Message m;
  m.type = probe::Type::kCallMeMaybe;
  m.txid = probe::newTxId();
  m.endpoints = {ep("198.18.1.2:5"), ep("[fd7a:115c:a1e0::1]:6")};
  auto d = probe::seal(wg::publicKeyOf(a), ka, m);
  EXPECT_TRUE(probe::isProbe(d));
  EXPECT_NE(d[0], 1);         // never a WireGuard type
  EXPECT_NE(d[0] & 0xc0, 0);  // never STUN
  auto back = probe::open(d, kb);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, probe::Type::kCallMeMaybe);
  EXPECT_EQ(back->txid, m.txid);
  EXPECT_EQ(back->endpoints, m.endpoints);
  for (size_t i = 0; i < d.size(); ++i) {
    auto t = d;
    t[i] ^= 0x01;
    EXPECT_FALSE(probe::open(t, kb)) << "byte " << i;
  }
  // Random garbage after the magic never opens and never crashes.
  for (int n = 0; n < 2000; ++n) {
    std::vector<uint8_t> g(static_cast<size_t>(n % 200));
    wg::randomBytes(g.data(), g.size());
    for (size_t i = 0; i < g.size() && i < 6; ++i) g[i] = probe::kMagic[i];
    EXPECT_FALSE(probe::open(g, kb));
  }
}

}  // namespace
}  // namespace wsa::overlay
