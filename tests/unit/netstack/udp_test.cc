// UDP: the flow table (bound, least-recently-used eviction, idle expiry on a ManualClock), the
// userspace stack's UDP (flows from the stack, listeners, the forwarder's on-demand ports and
// their bound) wired to itself, and the loopback UDP forwarder against a real echo socket on
// 127.0.0.1.
#include <gtest/gtest.h>

#include <array>
#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <set>

#include "support/loop.h"
#include "support/util.h"
#include "wsa/net/flow_table.h"
#include "wsa/netstack/netstack.h"
#include "wsa/netstack/udp_forward.h"

namespace wsa::netstack {
namespace {

using namespace std::chrono_literals;

constexpr const char* kV4 = "100.64.0.7";
constexpr const char* kV6 = "fd7a:115c:a1e0::7";

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// --- the flow table ------------------------------------------------------------------------------

struct Ended {
  std::string key;
  int value;
  net::FlowEnd why;
};

TEST(FlowTableTest, AtTheBoundTheLeastRecentlyUsedFlowIsEvicted) {
  ManualClock clock;
  std::vector<Ended> ended;
  net::FlowTable<int> t(clock, {.max_flows = 3, .idle_timeout = 60s},
                        [&](const std::string& k, int& v, net::FlowEnd why) {
                          ended.push_back({k, v, why});
                        });
  t.insert("a", 1);
  t.insert("b", 2);
  t.insert("c", 3);
  ASSERT_NE(t.find("a"), nullptr);  // a is now the most recently used; b the least
  t.insert("d", 4);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].key, "b");
  EXPECT_EQ(ended[0].value, 2);
  EXPECT_EQ(ended[0].why, net::FlowEnd::kEvicted);
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.find("b"), nullptr);
  EXPECT_EQ(*t.find("a"), 1);
  // Round robin over more keys than the bound: every insert evicts one; the size stays put.
  for (int i = 0; i < 100; ++i) t.insert("k" + std::to_string(i), i);
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.stats().opened, 104u);
  EXPECT_EQ(t.stats().evicted, 101u);
  EXPECT_NE(t.find("k99"), nullptr);
  EXPECT_NE(t.find("k97"), nullptr);
  EXPECT_EQ(t.find("k96"), nullptr);
  // erase and clear end flows with their own reasons.
  EXPECT_TRUE(t.erase("k98"));
  EXPECT_FALSE(t.erase("k98"));
  EXPECT_EQ(ended.back().why, net::FlowEnd::kClosed);
  t.clear();
  EXPECT_EQ(ended.back().why, net::FlowEnd::kCleared);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(clock.pendingTimers(), 0u);
}

TEST(FlowTableTest, IdleFlowsExpireAndUseKeepsThemOpen) {
  ManualClock clock;
  std::vector<Ended> ended;
  net::FlowTable<int> t(clock, {.max_flows = 10, .idle_timeout = 60s},
                        [&](const std::string& k, int& v, net::FlowEnd why) {
                          ended.push_back({k, v, why});
                        });
  t.insert("a", 1);
  clock.advance(20s);
  t.insert("b", 2);
  clock.advance(30s);
  ASSERT_NE(t.find("a"), nullptr);  // used at 50 s: a expires at 110 s, b at 80 s
  clock.advance(29s);               // 79 s
  EXPECT_TRUE(ended.empty());
  clock.advance(1s);  // 80 s
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].key, "b");
  EXPECT_EQ(ended[0].why, net::FlowEnd::kExpired);
  clock.advance(29s);  // 109 s
  EXPECT_EQ(ended.size(), 1u);
  clock.advance(1s);
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(ended[1].key, "a");
  EXPECT_EQ(t.stats().expired, 2u);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(clock.pendingTimers(), 0u) << "an empty table has no timer";
  // peek does not count as use.
  t.insert("c", 3);
  clock.advance(59s);
  EXPECT_NE(t.peek("c"), nullptr);
  clock.advance(1s);
  EXPECT_EQ(t.peek("c"), nullptr);
}

// --- the stack's UDP -----------------------------------------------------------------------------

class NetstackUdpTest : public ::testing::Test {
 protected:
  void SetUp() override { make(Options{}); }
  void make(Options o) {
    flows_.clear();
    stack_.reset();
    o.addresses = {kV4, kV6};
    auto s = Netstack::create(io_, o, [this](std::span<const uint8_t> p) {
      std::vector<uint8_t> copy(p.begin(), p.end());
      asio::post(io_, [this, copy = std::move(copy)] {
        if (stack_) stack_->input(copy);
      });
    });
    ASSERT_TRUE(s) << s.error();
    stack_ = std::move(*s);
  }
  bool runUntil(const std::function<bool()>& cond) { return test::runLoopUntil(io_, cond, 10s); }
  void settle() {
    for (int i = 0; i < 100000; ++i) {
      io_.restart();
      if (io_.poll() == 0) return;
    }
  }
  // A flow from the stack to addr:port whose replies land in `got`.
  UdpFlow* open(const std::string& addr, uint16_t port, std::vector<std::vector<uint8_t>>& got) {
    auto f = stack_->openUdp(
        addr, port, [&got](std::span<const uint8_t> d) { got.emplace_back(d.begin(), d.end()); });
    EXPECT_TRUE(f) << f.error();
    if (!f) return nullptr;
    flows_.push_back(std::move(*f));
    return flows_.back().get();
  }

  asio::io_context io_;
  std::unique_ptr<Netstack> stack_;
  std::vector<std::unique_ptr<UdpFlow>> flows_;
};

TEST_F(NetstackUdpTest, AFlowTalksToAListenerOverIPv4AndIPv6IncludingFragments) {
  std::vector<UdpInfo> seen;
  ASSERT_TRUE(stack_->listenUdp(53, [&](const UdpInfo& info, std::span<const uint8_t> d) {
    seen.push_back(info);
    std::vector<uint8_t> reply(d.begin(), d.end());
    reply.push_back('!');
    EXPECT_TRUE(stack_->sendUdp(info, reply));
  }));
  EXPECT_FALSE(stack_->listenUdp(53, [](const UdpInfo&, std::span<const uint8_t>) {}));
  for (const char* addr : {kV4, kV6}) {
    SCOPED_TRACE(addr);
    std::vector<std::vector<uint8_t>> got;
    UdpFlow* f = open(addr, 53, got);
    ASSERT_NE(f, nullptr);
    // Small, at the MTU's edge, and larger than the MTU (fragmented and reassembled).
    std::vector<size_t> sizes = {0, 1, 100, 1392, 1400, 4000, 20000, 65000};
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_TRUE(f->send(bytes(sizes[i], static_cast<uint8_t>(i))));
    }
    ASSERT_TRUE(runUntil([&] { return got.size() == sizes.size(); })) << got.size();
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto want = bytes(sizes[i], static_cast<uint8_t>(i));
      want.push_back('!');
      EXPECT_EQ(got[i], want) << "datagram " << i << " of " << sizes[i] << " bytes";
    }
    EXPECT_EQ(seen.back().local_address, addr);
    EXPECT_EQ(seen.back().remote_address, addr);
    EXPECT_EQ(seen.back().remote_port, f->localPort());
    EXPECT_EQ(seen.back().local_port, 53);
    EXPECT_EQ(seen.back().v6, std::string(addr) == kV6);
  }
  EXPECT_FALSE(flows_[0]->send(bytes(70000, 0))) << "larger than a UDP datagram can be";
  EXPECT_EQ(stack_->stats().udp_flows, 2u);
  flows_.clear();
  EXPECT_EQ(stack_->stats().udp_flows, 0u);
}

TEST_F(NetstackUdpTest, TheForwarderGetsEveryOtherPortUpToItsBound) {
  Options o;
  o.max_forwarded_udp_ports = 2;
  make(o);
  std::vector<UdpInfo> seen;
  stack_->setUdpForwarder([&](const UdpInfo& info, std::span<const uint8_t> d) {
    seen.push_back(info);
    EXPECT_TRUE(stack_->sendUdp(info, d));  // an echo
  });
  std::vector<std::vector<uint8_t>> a, b, c;
  ASSERT_TRUE(open(kV4, 5000, a)->send(bytes(10, 1)));
  ASSERT_TRUE(open(kV6, 6000, b)->send(bytes(3000, 2)));  // a fragmented first datagram
  ASSERT_TRUE(runUntil([&] { return a.size() == 1 && b.size() == 1; }));
  EXPECT_EQ(b[0], bytes(3000, 2));
  EXPECT_EQ(stack_->stats().udp_forwarded_ports, 2u);
  // A third port is over the bound: dropped, counted.
  UdpFlow* cf = open(kV4, 7000, c);
  ASSERT_TRUE(cf->send(bytes(10, 3)));
  settle();
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(stack_->stats().udp_port_refused, 1u);
  EXPECT_EQ(seen.size(), 2u);
  // Released, the port's socket goes and a new port fits.
  stack_->releaseUdpPort(5000);
  EXPECT_EQ(stack_->stats().udp_forwarded_ports, 1u);
  ASSERT_TRUE(cf->send(bytes(10, 4)));
  ASSERT_TRUE(runUntil([&] { return c.size() == 1; }));
  EXPECT_EQ(seen.back().local_port, 7000);
  // A listener of our own takes its port from the forwarder.
  bool own = false;
  ASSERT_TRUE(
      stack_->listenUdp(7000, [&](const UdpInfo&, std::span<const uint8_t>) { own = true; }));
  EXPECT_EQ(stack_->stats().udp_forwarded_ports, 1u);
  ASSERT_TRUE(cf->send(bytes(10, 5)));
  ASSERT_TRUE(runUntil([&] { return own; }));
  // Without a forwarder its ports go.
  stack_->setUdpForwarder(nullptr);
  EXPECT_EQ(stack_->stats().udp_forwarded_ports, 0u);
}

TEST_F(NetstackUdpTest, FlowsAreBoundedAndOutliveTheStack) {
  Options o;
  o.max_udp_flows = 2;
  make(o);
  std::vector<std::vector<uint8_t>> got;
  ASSERT_NE(open(kV4, 1, got), nullptr);
  ASSERT_NE(open(kV4, 2, got), nullptr);
  auto third = stack_->openUdp(kV4, 3, nullptr);
  ASSERT_FALSE(third);
  EXPECT_NE(third.error().find("too many overlay UDP flows (2)"), std::string::npos);
  EXPECT_EQ(stack_->stats().udp_flows_refused, 1u);
  auto kept = std::move(flows_.back());
  flows_.pop_back();
  stack_.reset();
  EXPECT_FALSE(kept->send(bytes(1, 0)));
}

// --- the loopback forwarder ----------------------------------------------------------------------

class UdpForwarderTest : public ::testing::Test {
 protected:
  UdpForwarderTest() : echo_(io_, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    port_ = echo_.local_endpoint().port();
    serveEcho();
  }
  // An echo server on 127.0.0.1 that also records its peers (one per flow).
  void serveEcho() {
    echo_.async_receive_from(asio::buffer(echo_buf_), echo_from_,
                             [this](std::error_code ec, size_t n) {
                               if (ec) return;
                               echo_peers_.insert(echo_from_.port());
                               echo_.send_to(asio::buffer(echo_buf_.data(), n), echo_from_);
                               serveEcho();
                             });
  }
  std::unique_ptr<UdpForwarder> make(UdpForwarder::Options o) {
    UdpForwarder::Hooks h;
    h.reply = [this](const UdpInfo& flow, std::span<const uint8_t> d) -> Status {
      replies_.push_back({flow.remote(), std::vector<uint8_t>(d.begin(), d.end())});
      return {};
    };
    h.port_idle = [this](uint16_t port) { idle_ports_.push_back(port); };
    return std::make_unique<UdpForwarder>(io_, clock_, o, std::move(h));
  }
  UdpInfo peer(int n, uint16_t port = 0) {
    return UdpInfo{"100.64.0.9", static_cast<uint16_t>(40000 + n), kV4, port ? port : port_, false};
  }
  bool runUntil(const std::function<bool()>& cond) { return test::runLoopUntil(io_, cond, 10s); }

  asio::io_context io_;
  ManualClock clock_;
  asio::ip::udp::socket echo_;
  uint16_t port_;
  std::array<uint8_t, 65536> echo_buf_{};
  asio::ip::udp::endpoint echo_from_;
  std::set<uint16_t> echo_peers_;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> replies_;
  std::vector<uint16_t> idle_ports_;
};

TEST_F(UdpForwarderTest, DatagramsReachTheLoopbackAndRepliesGoBackAlongTheirFlow) {
  auto fwd = make({});
  for (int i = 0; i < 50; ++i) {
    fwd->forward(peer(i % 2), bytes(static_cast<size_t>(i * 20), static_cast<uint8_t>(i)));
  }
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 50; })) << replies_.size();
  size_t to_a = 0;
  for (const auto& [to, data] : replies_) to_a += to == "100.64.0.9:40000" ? 1 : 0;
  EXPECT_EQ(to_a, 25u);
  EXPECT_EQ(echo_peers_.size(), 2u) << "one loopback socket per flow";
  auto s = fwd->stats();
  EXPECT_EQ(s.flows_open, 2u);
  EXPECT_EQ(s.flows.opened, 2u);
  EXPECT_EQ(s.datagrams_to_local, 50u);
  EXPECT_EQ(s.datagrams_from_local, 50u);
  EXPECT_EQ(s.bytes_to_local, s.bytes_from_local);
  EXPECT_EQ(s.bytes_to_local, 20u * (49 * 50 / 2));
}

TEST_F(UdpForwarderTest, AtTheFlowBoundTheLeastRecentlyUsedFlowIsClosed) {
  auto fwd = make({.max_flows = 2});
  fwd->forward(peer(1), bytes(5, 1));
  fwd->forward(peer(2), bytes(5, 2));
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 2; }));
  fwd->forward(peer(1), bytes(5, 3));  // peer 1 used again: peer 2 is the least recently used
  fwd->forward(peer(3), bytes(5, 4));
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 4; }));
  auto s = fwd->stats();
  EXPECT_EQ(s.flows_open, 2u);
  EXPECT_EQ(s.flows.evicted, 1u);
  EXPECT_TRUE(idle_ports_.empty()) << "the port still has flows";
  // Peer 2 comes back on a new flow (a new loopback socket), evicting peer 1.
  fwd->forward(peer(2), bytes(5, 5));
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 5; }));
  EXPECT_EQ(replies_.back().first, "100.64.0.9:40002");
  EXPECT_EQ(echo_peers_.size(), 4u);
  EXPECT_EQ(fwd->stats().flows.evicted, 2u);
  EXPECT_EQ(fwd->stats().flows.opened, 4u);
}

TEST_F(UdpForwarderTest, IdleFlowsExpireAndTheirPortIsReleased) {
  auto fwd = make({.max_flows = 8, .idle_timeout = 60s});
  fwd->forward(peer(1), bytes(5, 1));
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 1; }));
  clock_.advance(30s);
  fwd->forward(peer(2), bytes(5, 2));
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 2; }));
  clock_.advance(30s);  // peer 1's flow: 60 s idle
  EXPECT_EQ(fwd->stats().flows.expired, 1u);
  EXPECT_EQ(fwd->stats().flows_open, 1u);
  EXPECT_TRUE(idle_ports_.empty());
  clock_.advance(30s);
  EXPECT_EQ(fwd->stats().flows.expired, 2u);
  EXPECT_EQ(idle_ports_, std::vector<uint16_t>{port_}) << "the last flow to the port went";
  // A reply that arrives for a closed flow goes nowhere; a new datagram opens a new flow.
  fwd->forward(peer(1), bytes(5, 3));
  ASSERT_TRUE(runUntil([&] { return replies_.size() == 3; }));
  EXPECT_EQ(fwd->stats().flows.opened, 3u);
}

TEST_F(UdpForwarderTest, ALoopbackPortNobodyListensOnCountsDrops) {
  // A port that was just free (bound, then closed) on the loopback.
  uint16_t closed;
  {
    asio::ip::udp::socket s(io_, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0));
    closed = s.local_endpoint().port();
  }
  auto fwd = make({});
  for (int i = 0; i < 5; ++i) fwd->forward(peer(1, closed), bytes(5, 1));
  ASSERT_TRUE(runUntil([&] { return fwd->stats().dropped_port_closed > 0; }));
  EXPECT_TRUE(replies_.empty());
  EXPECT_EQ(fwd->stats().flows_open, 1u);
  fwd.reset();
  EXPECT_TRUE(idle_ports_.empty()) << "no release during the teardown";
}

}  // namespace
}  // namespace wsa::netstack
