// The userspace TCP/IP stack on a real Asio loop, wired to itself: what it sends is fed back to
// it on the next loop turn, so a connection dialed from the stack to its own address exercises
// both ends (the dialing and the accepting side) of lwIP through our ByteStream adapter.
#include "wsa/netstack/netstack.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <cstring>
#include <deque>

#include "support/loop.h"
#include "support/util.h"

namespace wsa::netstack {
namespace {

using namespace std::chrono_literals;

constexpr const char* kV4 = "100.64.0.7";
constexpr const char* kV6 = "fd7a:115c:a1e0::7";

std::string pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

// Reads a stream to its end (or error) into `data`.
struct Reader {
  explicit Reader(net::ByteStream& s) : stream(s) {}
  void start() {
    stream.asyncReadSome(buf, sizeof(buf), [this](std::error_code e, size_t n) {
      data.append(buf, n);
      if (e) {
        ec = e;
        done = true;
        return;
      }
      if (!paused) start();
    });
  }
  net::ByteStream& stream;
  char buf[16384];
  std::string data;
  std::error_code ec;
  bool done = false;
  bool paused = false;
};

// Writes `data` in chunks, then half-closes.
struct Writer {
  Writer(net::ByteStream& s, std::string d, size_t chunk = 65536)
      : stream(s), data(std::move(d)), chunk_size(chunk) {}
  void start() {
    if (off == data.size()) {
      stream.shutdownWrite();
      done = true;
      return;
    }
    size_t n = std::min(chunk_size, data.size() - off);
    stream.asyncWrite(data.data() + off, n, [this](std::error_code e, size_t written) {
      off += written;
      if (e) {
        ec = e;
        done = true;
        return;
      }
      chunks++;
      start();
    });
  }
  net::ByteStream& stream;
  std::string data;
  size_t chunk_size;
  size_t off = 0;
  size_t chunks = 0;
  std::error_code ec;
  bool done = false;
};

class NetstackTest : public ::testing::Test {
 protected:
  void SetUp() override { make(Options{}); }
  void make(Options o) {
    stack_.reset();
    if (o.addresses.empty()) o.addresses = {kV4, kV6};
    auto s = Netstack::create(io_, o, [this](std::span<const uint8_t> p) {
      sent_.emplace_back(p.begin(), p.end());
      if (!loopback_) return;
      std::vector<uint8_t> copy(p.begin(), p.end());
      asio::post(io_, [this, copy = std::move(copy)] {
        if (stack_) stack_->input(copy);
      });
    });
    ASSERT_TRUE(s) << s.error();
    stack_ = std::move(*s);
  }
  // Runs the loop until `cond` holds (bounded in real time).
  bool runUntil(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
    return test::runLoopUntil(io_, cond, limit);
  }
  // Runs every handler that is ready, until none is (timers aside): the stack is quiet.
  void settle() {
    for (int i = 0; i < 100000; ++i) {
      io_.restart();
      if (io_.poll() == 0) return;
    }
  }
  net::ByteStreamPtr dial(const std::string& addr, uint16_t port, std::string* error = nullptr) {
    net::ByteStreamPtr out;
    bool done = false;
    stack_->dial(addr, port, [&](Result<net::ByteStreamPtr> r) {
      done = true;
      if (r) {
        out = std::move(*r);
      } else if (error != nullptr) {
        *error = r.error();
      }
    });
    EXPECT_TRUE(runUntil([&] { return done; }));
    return out;
  }

  asio::io_context io_;
  std::unique_ptr<Netstack> stack_;
  bool loopback_ = true;
  std::vector<std::vector<uint8_t>> sent_;
};

TEST_F(NetstackTest, TcpRoundTripOverIPv4AndIPv6WithHalfClose) {
  std::vector<net::ByteStreamPtr> accepted;
  std::vector<ConnectionInfo> infos;
  ASSERT_TRUE(stack_->listen(7, [&](net::ByteStreamPtr s, const ConnectionInfo& info) {
    accepted.push_back(std::move(s));
    infos.push_back(info);
  }));
  int n = 0;
  for (const char* addr : {kV4, kV6}) {
    SCOPED_TRACE(addr);
    auto client = dial(addr, 7);
    ASSERT_TRUE(client);
    ASSERT_TRUE(runUntil([&] { return accepted.size() == static_cast<size_t>(n + 1); }));
    net::ByteStream& server = *accepted.back();
    EXPECT_EQ(infos.back().local_port, 7);
    EXPECT_NE(infos.back().remote.find(addr), std::string::npos) << infos.back().remote;
    EXPECT_EQ(client->remoteAddress(), infos.back().local);

    // 4 MiB up, then a half-close; the server answers after the EOF and closes.
    std::string up = pattern(4 << 20);
    Writer w(*client, up);
    Reader server_reader(server);
    Reader client_reader(*client);
    w.start();
    server_reader.start();
    client_reader.start();
    ASSERT_TRUE(runUntil([&] { return server_reader.done; }));
    EXPECT_EQ(server_reader.ec, asio::error::eof);
    EXPECT_TRUE(server_reader.data == up) << "payload differs";
    std::string reply = "got " + std::to_string(server_reader.data.size());
    Writer answer(server, reply);
    answer.start();
    ASSERT_TRUE(runUntil([&] { return client_reader.done; }));
    EXPECT_EQ(client_reader.ec, asio::error::eof);
    EXPECT_EQ(client_reader.data, reply);
    client->close();
    accepted.back()->close();
    ++n;
  }
  EXPECT_EQ(stack_->stats().tcp_accepted, 2u);
  EXPECT_EQ(stack_->stats().tcp_dialed, 2u);
  EXPECT_EQ(stack_->stats().connections, 0u);
  EXPECT_EQ(stack_->stats().rx_invalid, 0u);
}

TEST_F(NetstackTest, AReceiverThatDoesNotReadStopsTheSenderAtTheWindow) {
  net::ByteStreamPtr server;
  ASSERT_TRUE(stack_->listen(
      9, [&](net::ByteStreamPtr s, const ConnectionInfo&) { server = std::move(s); }));
  auto client = dial(kV4, 9);
  ASSERT_TRUE(client);
  ASSERT_TRUE(runUntil([&] { return server != nullptr; }));
  std::string data = pattern(8 << 20);
  Writer w(*client, data, 16384);
  w.start();
  settle();
  // Nothing reads: what is in flight is bounded by the receive window plus the send buffer.
  const size_t window = 64 * 1380;
  EXPECT_FALSE(w.done);
  EXPECT_LE(stack_->stats().buffered_rx_bytes, window);
  EXPECT_LE(w.off, 2 * window + 16384);
  EXPECT_GT(w.off, 0u);
  // Reading resumes the flow, and everything arrives intact.
  Reader r(*server);
  r.start();
  ASSERT_TRUE(runUntil([&] { return r.done; }, 30s));
  EXPECT_TRUE(r.data == data);
  EXPECT_EQ(stack_->stats().buffered_rx_bytes, 0u);
}

TEST_F(NetstackTest, ForwarderAcceptsAnyPortUpToItsBound) {
  Options o;
  o.max_forwarded_ports = 2;
  make(o);
  std::vector<uint16_t> ports;
  std::vector<net::ByteStreamPtr> keep;
  stack_->setForwarder([&](net::ByteStreamPtr s, const ConnectionInfo& info) {
    ports.push_back(info.local_port);
    keep.push_back(std::move(s));
  });
  std::string ea, eb, ec;
  auto a = dial(kV4, 5555, &ea);
  auto b = dial(kV6, 6666, &eb);
  auto c = dial(kV4, 5555, &ec);  // same port again: the listener is reused
  ASSERT_TRUE(a && b && c) << ea << " / " << eb << " / " << ec;
  ASSERT_TRUE(runUntil([&] { return ports.size() == 3; }))
      << ports.size() << " accepted=" << stack_->stats().tcp_accepted
      << " fwd=" << stack_->stats().forwarded_ports << " conns=" << stack_->stats().connections;
  EXPECT_EQ(ports, (std::vector<uint16_t>{5555, 6666, 5555}));
  EXPECT_EQ(stack_->stats().forwarded_ports, 2u);
  // A third port is over the bound: the SYN meets no listener and is reset.
  std::string error;
  auto d = dial(kV4, 7777, &error);
  EXPECT_FALSE(d);
  EXPECT_NE(error.find("reset"), std::string::npos) << error;
  EXPECT_EQ(stack_->stats().forwarded_ports_refused, 1u);
  // A specific listener takes precedence over the forwarder's.
  bool specific = false;
  ASSERT_TRUE(stack_->listen(5555, [&](net::ByteStreamPtr s, const ConnectionInfo&) {
    specific = true;
    keep.push_back(std::move(s));
  }));
  EXPECT_EQ(stack_->stats().forwarded_ports, 1u);
  auto e = dial(kV4, 5555);
  ASSERT_TRUE(runUntil([&] { return specific; }));
  EXPECT_FALSE(stack_->listen(5555, [](net::ByteStreamPtr, const ConnectionInfo&) {}))
      << "a second specific listener on one port";
}

TEST_F(NetstackTest, GatedForwarderHoldsTheSynUntilItDecides) {
  std::vector<std::string> asked;
  std::vector<std::function<void(bool)>> pending;
  std::vector<ConnectionInfo> accepted_info;
  std::vector<net::ByteStreamPtr> keep;
  stack_->setForwarder(
      [&](net::ByteStreamPtr s, const ConnectionInfo& info) {
        accepted_info.push_back(info);
        keep.push_back(std::move(s));
      },
      [&](const ConnectionInfo& info, std::function<void(bool)> admit) {
        asked.push_back(info.remote + " -> " + std::to_string(info.local_port));
        pending.push_back(std::move(admit));
      });
  // Refused: the dialer's SYN is answered with a reset; no handshake ever happened.
  bool done = false;
  std::string error;
  stack_->dial(kV4, 7000, [&](Result<net::ByteStreamPtr> r) {
    done = true;
    if (!r) error = r.error();
  });
  ASSERT_TRUE(runUntil([&] { return pending.size() == 1; }));
  settle();
  EXPECT_FALSE(done) << "nothing may answer the SYN before the gate decides";
  pending[0](false);
  ASSERT_TRUE(runUntil([&] { return done; }));
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(stack_->stats().tcp_refused_by_gate, 1u);
  EXPECT_EQ(stack_->stats().tcp_accepted, 0u);
  // Admitted (later, from the loop): the handshake completes and the forwarder gets the stream.
  done = false;
  net::ByteStreamPtr client;
  stack_->dial(kV6, 7001, [&](Result<net::ByteStreamPtr> r) {
    done = true;
    if (r) client = std::move(*r);
  });
  ASSERT_TRUE(runUntil([&] { return pending.size() == 2; }));
  asio::post(io_, [&] { pending[1](true); });
  ASSERT_TRUE(runUntil([&] { return done && accepted_info.size() == 1; }));
  ASSERT_TRUE(client);
  EXPECT_EQ(accepted_info[0].local_port, 7001);
  EXPECT_NE(asked[1].find(accepted_info[0].remote), std::string::npos)
      << "the gate and the accept name the same peer: " << asked[1] << " / "
      << accepted_info[0].remote;
  EXPECT_EQ(asked.size(), 2u) << "one decision per connection";
}

TEST_F(NetstackTest, ConnectionLimitRefusesDialsAndAccepts) {
  // Both ends of a connection to ourselves count against the limit.
  Options o;
  o.max_connections = 2;
  make(o);
  std::vector<net::ByteStreamPtr> accepted;
  auto serve = [&](net::ByteStreamPtr s, const ConnectionInfo&) {
    accepted.push_back(std::move(s));
  };
  ASSERT_TRUE(stack_->listen(22, serve));
  auto a = dial(kV4, 22);
  ASSERT_TRUE(a);
  ASSERT_TRUE(runUntil([&] { return accepted.size() == 1; }));
  EXPECT_EQ(stack_->stats().connections, 2u);
  // At the limit a dial is refused before it starts.
  std::string error;
  auto b = dial(kV4, 22, &error);
  EXPECT_FALSE(b);
  EXPECT_NE(error.find("too many overlay TCP connections (2)"), std::string::npos) << error;
  EXPECT_EQ(stack_->stats().tcp_refused, 1u);
  // Closing frees the slots.
  a->close();
  accepted.clear();
  ASSERT_TRUE(runUntil([&] { return stack_->stats().connections == 0; }));
  EXPECT_TRUE(dial(kV4, 22, &error)) << error;

  // With room for the dial but not for its accepting end, the accept is refused: the dialer's
  // handshake completed, and then it is reset.
  o.max_connections = 3;
  make(o);
  accepted.clear();
  ASSERT_TRUE(stack_->listen(22, serve));
  auto c = dial(kV4, 22);
  ASSERT_TRUE(runUntil([&] { return accepted.size() == 1; }));
  auto d = dial(kV4, 22);
  ASSERT_TRUE(d);
  Reader r(*d);
  r.start();
  ASSERT_TRUE(runUntil([&] { return r.done; }));
  EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();
  EXPECT_EQ(stack_->stats().tcp_refused, 1u);
  EXPECT_EQ(accepted.size(), 1u);
}

TEST_F(NetstackTest, ClosingWithUnreadDataResetsThePeer) {
  net::ByteStreamPtr server;
  ASSERT_TRUE(stack_->listen(
      80, [&](net::ByteStreamPtr s, const ConnectionInfo&) { server = std::move(s); }));
  auto client = dial(kV6, 80);
  ASSERT_TRUE(client);
  ASSERT_TRUE(runUntil([&] { return server != nullptr; }));
  Writer w(*client, "data the server never reads");
  w.start();
  Reader r(*client);
  r.start();
  settle();
  server->close();
  ASSERT_TRUE(runUntil([&] { return r.done; }));
  EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();
  // Operations on a closed stream fail at once.
  bool failed = false;
  server->asyncWrite(
      "x", 1, [&](std::error_code e, size_t) { failed = e == asio::error::operation_aborted; });
  ASSERT_TRUE(runUntil([&] { return failed; }));
}

TEST_F(NetstackTest, AbortResetsThePeer) {
  net::ByteStreamPtr server;
  ASSERT_TRUE(stack_->listen(
      81, [&](net::ByteStreamPtr s, const ConnectionInfo&) { server = std::move(s); }));
  auto client = dial(kV4, 81);
  ASSERT_TRUE(client);
  ASSERT_TRUE(runUntil([&] { return server != nullptr; }));
  Reader r(*client);
  r.start();
  settle();
  server->abort();
  ASSERT_TRUE(runUntil([&] { return r.done; }));
  EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();
  ASSERT_TRUE(runUntil([&] { return stack_->stats().connections == 0; }));
}

// A minimal ICMPv4 echo request from a peer in the overlay.
std::vector<uint8_t> icmpEcho(const char* src, const char* dst) {
  std::vector<uint8_t> p(20 + 8 + 4, 0);
  p[0] = 0x45;
  p[3] = static_cast<uint8_t>(p.size());
  p[8] = 64;
  p[9] = 1;
  auto put = [&](size_t off, const char* a) {
    unsigned x[4];
    std::sscanf(a, "%u.%u.%u.%u", &x[0], &x[1], &x[2], &x[3]);
    for (int i = 0; i < 4; ++i) p[off + static_cast<size_t>(i)] = static_cast<uint8_t>(x[i]);
  };
  put(12, src);
  put(16, dst);
  auto csum = [&](size_t off, size_t len) {
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i += 2)
      sum += static_cast<uint32_t>(p[off + i] << 8 | p[off + i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
  };
  uint16_t h = csum(0, 20);
  p[10] = static_cast<uint8_t>(h >> 8);
  p[11] = static_cast<uint8_t>(h);
  p[20] = 8;  // echo request
  p[24] = 0x12;
  p[25] = 0x34;  // id
  p[27] = 1;     // sequence
  std::memcpy(&p[28], "ping", 4);
  uint16_t c = csum(20, 12);
  p[22] = static_cast<uint8_t>(c >> 8);
  p[23] = static_cast<uint8_t>(c);
  return p;
}

TEST_F(NetstackTest, AnswersPingAndDropsGarbage) {
  loopback_ = false;
  stack_->input(icmpEcho("100.64.0.9", kV4));
  ASSERT_EQ(sent_.size(), 1u);
  const auto& reply = sent_[0];
  ASSERT_GE(reply.size(), 32u);
  EXPECT_EQ(reply[9], 1);   // ICMP
  EXPECT_EQ(reply[20], 0);  // echo reply
  EXPECT_EQ(reply[16], 100);
  EXPECT_EQ(reply[19], 9);  // back to the sender
  EXPECT_EQ(std::string(reply.begin() + 28, reply.begin() + 32), "ping");
  // Not ours: no answer.
  stack_->input(icmpEcho("100.64.0.9", "100.64.0.8"));
  EXPECT_EQ(sent_.size(), 1u);
  // Garbage is counted, never answered.
  stack_->input(std::vector<uint8_t>{});
  stack_->input(std::vector<uint8_t>{0x45, 0, 0});
  stack_->input(std::vector<uint8_t>(70000, 0x45));
  std::vector<uint8_t> v9(40, 0);
  v9[0] = 0x90;
  stack_->input(v9);
  EXPECT_EQ(sent_.size(), 1u);
  EXPECT_EQ(stack_->stats().rx_invalid, 4u);
}

TEST_F(NetstackTest, OneStackPerProcessAndBadAddresses) {
  auto second = Netstack::create(io_, Options{{"100.64.0.8"}}, [](std::span<const uint8_t>) {});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().find("already exists"), std::string::npos) << second.error();
  stack_.reset();
  auto bad = Netstack::create(io_, Options{{"100.64.0.300"}}, [](std::span<const uint8_t>) {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("100.64.0.300"), std::string::npos) << bad.error();
  auto none = Netstack::create(io_, Options{}, [](std::span<const uint8_t>) {});
  ASSERT_FALSE(none);
  auto two =
      Netstack::create(io_, Options{{"100.64.0.1", "100.64.0.2"}}, [](std::span<const uint8_t>) {});
  ASSERT_FALSE(two);
  std::string error;
  make(Options{});
  auto r = dial("not-an-ip", 1, &error);
  EXPECT_FALSE(r);
  EXPECT_NE(error.find("not an IP address"), std::string::npos) << error;
}

TEST_F(NetstackTest, DestroyingTheStackFailsOpenStreams) {
  net::ByteStreamPtr server;
  ASSERT_TRUE(stack_->listen(
      3, [&](net::ByteStreamPtr s, const ConnectionInfo&) { server = std::move(s); }));
  auto client = dial(kV4, 3);
  ASSERT_TRUE(client);
  ASSERT_TRUE(runUntil([&] { return server != nullptr; }));
  Reader r(*client);
  r.start();
  settle();
  stack_.reset();
  ASSERT_TRUE(runUntil([&] { return r.done; }));
  EXPECT_TRUE(r.ec) << "a read pending when the stack went away must fail";
  client.reset();  // streams may outlive the stack
  server.reset();
}

}  // namespace
}  // namespace wsa::netstack
