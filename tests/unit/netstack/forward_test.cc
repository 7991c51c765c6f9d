// net::splice and the loopback forwarder on a real loop with real sockets (socketpairs and a
// TCP listener on 127.0.0.1).
#include "wsa/netstack/forward.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/connect_pair.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include "support/loop.h"
#include "support/util.h"
#include "wsa/net/asio_stream.h"
#include "wsa/net/splice.h"

namespace wsa::netstack {
namespace {

using namespace std::chrono_literals;
using Local = asio::local::stream_protocol::socket;

class ForwardTest : public ::testing::Test {
 protected:
  bool runUntil(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
    return test::runLoopUntil(io_, cond, limit);
  }
  // A connected pair: one end as a ByteStream for the code under test, one raw for the test.
  std::pair<net::ByteStreamPtr, std::unique_ptr<Local>> pair() {
    Local a(io_), b(io_);
    asio::local::connect_pair(a, b);
    return {std::make_unique<net::UnixStream>(std::move(a)), std::make_unique<Local>(std::move(b))};
  }
  // Reads `s` to EOF (or error) on the loop.
  struct Drain {
    std::string data;
    std::error_code ec;
    bool done = false;
    char buf[8192];
  };
  template <typename Socket>
  void drain(Socket& s, Drain& d) {
    s.async_read_some(asio::buffer(d.buf), [this, &s, &d](std::error_code ec, size_t n) {
      d.data.append(d.buf, n);
      if (ec) {
        d.ec = ec;
        d.done = true;
        return;
      }
      drain(s, d);
    });
  }

  asio::io_context io_;
};

TEST_F(ForwardTest, SpliceCarriesBothWaysAndPassesHalfCloses) {
  auto [a, a_peer] = pair();
  auto [b, b_peer] = pair();
  std::optional<net::SpliceResult> result;
  net::splice(
      std::move(a), std::move(b), [&](const net::SpliceResult& r) { result = r; }, 4096);
  std::string up(1 << 20, 'u'), down(300000, 'd');
  Drain at_b, at_a;
  drain(*b_peer, at_b);
  drain(*a_peer, at_a);
  // (Structured bindings are captured by an init-capture: clang 14, which clang-tidy uses,
  // cannot capture them.)
  asio::async_write(*a_peer, asio::buffer(up), [&, &peer = *a_peer](std::error_code ec, size_t) {
    ASSERT_FALSE(ec);
    peer.shutdown(asio::socket_base::shutdown_send);  // EOF one way only
  });
  ASSERT_TRUE(runUntil([&] { return at_b.done; }));
  EXPECT_EQ(at_b.ec, asio::error::eof) << "the EOF is passed on as a half-close";
  EXPECT_EQ(at_b.data.size(), up.size());
  EXPECT_FALSE(result) << "the other direction is still open";
  // The other direction still works after the half-close.
  asio::async_write(*b_peer, asio::buffer(down), [&, &peer = *b_peer](std::error_code ec, size_t) {
    ASSERT_FALSE(ec);
    peer.shutdown(asio::socket_base::shutdown_send);
  });
  ASSERT_TRUE(runUntil([&] { return result.has_value() && at_a.done; }));
  EXPECT_EQ(at_a.data, down);
  EXPECT_EQ(result->a_to_b, up.size());
  EXPECT_EQ(result->b_to_a, down.size());
  EXPECT_FALSE(result->error);
}

TEST_F(ForwardTest, SpliceClosesBothSidesWhenOneFails) {
  auto [a, a_peer] = pair();
  auto [b, b_peer] = pair();
  std::optional<net::SpliceResult> result;
  net::splice(std::move(a), std::move(b), [&](const net::SpliceResult& r) { result = r; });
  Drain at_a;
  drain(*a_peer, at_a);
  // b's peer vanishes with data unsent the other way: a write to it fails or its read ends.
  std::string x(1000, 'x');
  asio::write(*a_peer, asio::buffer(x));
  b_peer->close();
  ASSERT_TRUE(runUntil([&] { return result.has_value() && at_a.done; }));
  EXPECT_TRUE(at_a.ec) << "a's peer sees the end too";
}

TEST_F(ForwardTest, ForwarderJoinsALocalListenerAndResetsWhenNoneListens) {
  asio::ip::tcp::acceptor acceptor(io_, {asio::ip::address_v4::loopback(), 0});
  uint16_t port = acceptor.local_endpoint().port();
  asio::ip::tcp::socket server(io_);
  bool accepted = false;
  acceptor.async_accept(server, [&](std::error_code ec) { accepted = !ec; });

  LocalForwarder fwd(io_, LocalForwarder::Options{});
  auto [overlay, client] = pair();
  fwd.forward(std::move(overlay), port);
  ASSERT_TRUE(runUntil([&] { return accepted; }));
  EXPECT_EQ(fwd.stats().active, 1u);
  std::string hello = "hello through the forwarder";
  asio::write(*client, asio::buffer(hello));
  client->shutdown(asio::socket_base::shutdown_send);
  Drain at_server, at_client;
  drain(server, at_server);
  drain(*client, at_client);
  ASSERT_TRUE(runUntil([&] { return at_server.done; }));
  EXPECT_EQ(at_server.data, hello);
  asio::write(server, asio::buffer(std::string("bye")));
  server.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(runUntil([&] { return at_client.done && fwd.stats().active == 0; }));
  EXPECT_EQ(at_client.data, "bye");
  EXPECT_EQ(fwd.stats().connections, 1u);
  EXPECT_EQ(fwd.stats().bytes_to_local, hello.size());
  EXPECT_EQ(fwd.stats().bytes_from_local, 3u);

  // Nothing listens on a port: neither 127.0.0.1 nor ::1 answers; the overlay side is ended.
  acceptor.close();
  auto [overlay2, client2] = pair();
  fwd.forward(std::move(overlay2), port);
  Drain gone;
  drain(*client2, gone);
  ASSERT_TRUE(runUntil([&] { return gone.done; }));
  EXPECT_EQ(fwd.stats().refused, 1u);
  EXPECT_EQ(fwd.stats().active, 0u);
}

TEST_F(ForwardTest, GateConnectsFirstAndForwardClaimsThatConnection) {
  asio::ip::tcp::acceptor acceptor(io_, {asio::ip::address_v4::loopback(), 0});
  uint16_t port = acceptor.local_endpoint().port();
  int accepts = 0;
  asio::ip::tcp::socket server(io_);
  acceptor.async_accept(server, [&](std::error_code ec) { accepts += ec ? 0 : 1; });
  LocalForwarder fwd(io_, LocalForwarder::Options{});
  std::optional<bool> admitted;
  fwd.gate(port, "100.64.0.9:40000", [&](bool ok) { admitted = ok; });
  ASSERT_TRUE(runUntil([&] { return admitted.has_value() && accepts == 1; }));
  EXPECT_TRUE(*admitted);
  // The accepted overlay connection is joined to that local connection, not a new one.
  auto [overlay, client] = pair();
  fwd.forward(std::move(overlay), port, "100.64.0.9:40000");
  asio::write(*client, asio::buffer(std::string("via the gate")));
  client->shutdown(asio::socket_base::shutdown_send);
  Drain at_server;
  drain(server, at_server);
  ASSERT_TRUE(runUntil([&] { return at_server.done; }));
  EXPECT_EQ(at_server.data, "via the gate");
  EXPECT_EQ(accepts, 1);
  EXPECT_EQ(fwd.stats().connections, 1u);
  // A closed port: refused before anything is accepted on the overlay.
  acceptor.close();
  std::optional<bool> refused;
  fwd.gate(port, "100.64.0.9:40001", [&](bool ok) { refused = ok; });
  ASSERT_TRUE(runUntil([&] { return refused.has_value(); }));
  EXPECT_FALSE(*refused);
  EXPECT_EQ(fwd.stats().refused, 1u);
}

TEST_F(ForwardTest, ForwarderRejectsBeyondItsBound) {
  asio::ip::tcp::acceptor acceptor(io_, {asio::ip::address_v4::loopback(), 0});
  uint16_t port = acceptor.local_endpoint().port();
  LocalForwarder::Options o;
  o.max_active = 1;
  LocalForwarder fwd(io_, o);
  auto [o1, c1] = pair();
  auto [o2, c2] = pair();
  fwd.forward(std::move(o1), port);
  fwd.forward(std::move(o2), port);
  EXPECT_EQ(fwd.stats().rejected, 1u);
  Drain gone;
  drain(*c2, gone);
  ASSERT_TRUE(runUntil([&] { return gone.done; }));
  EXPECT_EQ(fwd.stats().active, 1u);
}

}  // namespace
}  // namespace wsa::netstack
