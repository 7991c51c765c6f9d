// The device's I/O edges on a real loop: the UDP bind (batching, the bounded send queue) and
// the configuration protocol (`wg`'s UAPI: parsing, errors, the socket server and its bounds).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <cerrno>
#include <cstring>
#include <thread>

#include "support/loop.h"
#include "support/util.h"
#include "wsa/common/clock.h"
#include "wsa/wg/device.h"
#include "wsa/wg/uapi.h"
#include "wsa/wg/udp.h"

namespace wsa::wg {
namespace {

using namespace std::chrono_literals;

using test::runLoopUntil;

TEST(WgUdpTest, DatagramsRoundTripOverLoopbackInBatches) {
  asio::io_context io;
  std::vector<std::string> got;
  Endpoint last_from;
  auto a = UdpBind::open(
      io, 0,
      [&](const Endpoint& from, std::span<uint8_t> d) {
        got.emplace_back(d.begin(), d.end());
        last_from = from;
      },
      "127.0.0.1");
  ASSERT_TRUE(a) << a.error();
  auto b = UdpBind::open(
      io, 0, [](const Endpoint&, std::span<uint8_t>) {}, "127.0.0.1");
  ASSERT_TRUE(b) << b.error();
  Endpoint to = *parseEndpoint("127.0.0.1:" + std::to_string((*a)->port()));
  for (int i = 0; i < 100; ++i) {
    std::string s = "datagram " + std::to_string(i);
    (*b)->send(to, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }
  EXPECT_EQ((*b)->queued(), 100u);  // nothing leaves before the loop turns
  ASSERT_TRUE(runLoopUntil(io, [&] { return got.size() == 100; }));
  EXPECT_EQ(got.front(), "datagram 0");
  EXPECT_EQ(got.back(), "datagram 99");
  EXPECT_EQ(last_from.port, (*b)->port());
  EXPECT_EQ((*b)->stats().tx_datagrams, 100u);
  EXPECT_LE((*b)->stats().tx_batches, 100u / UdpBind::kBatch + 1) << "sent one by one";
  EXPECT_LT((*a)->stats().rx_batches, 100u) << "received one by one";
}

TEST(WgUdpTest, DualStackSocketReachesIPv4Peers) {
  asio::io_context io;
  int got = 0;
  auto a = UdpBind::open(io, 0, [&](const Endpoint& from, std::span<uint8_t>) {
    ++got;
    EXPECT_FALSE(from.v6) << "IPv4 senders are reported as IPv4, not ::ffff:";
  });
  ASSERT_TRUE(a) << a.error();
  auto b = UdpBind::open(io, 0, [](const Endpoint&, std::span<uint8_t>) {});
  ASSERT_TRUE(b) << b.error();
  uint8_t x = 1;
  (*b)->send(*parseEndpoint("127.0.0.1:" + std::to_string((*a)->port())), {&x, 1});
  ASSERT_TRUE(runLoopUntil(io, [&] { return got == 1; }));
}

TEST(WgUdpTest, SendQueueIsBoundedAndCountsWhatItDrops) {
  asio::io_context io;
  size_t got = 0;
  auto a = UdpBind::open(
      io, 0, [&](const Endpoint&, std::span<uint8_t>) { ++got; }, "127.0.0.1");
  ASSERT_TRUE(a) << a.error();
  auto b = UdpBind::open(
      io, 0, [](const Endpoint&, std::span<uint8_t>) {}, "127.0.0.1");
  ASSERT_TRUE(b) << b.error();
  Endpoint to = *parseEndpoint("127.0.0.1:" + std::to_string((*a)->port()));
  uint8_t payload[64] = {};
  // More than the bound in one loop turn: the excess is dropped (as a full NIC queue would).
  for (size_t i = 0; i < UdpBind::kMaxQueued + 500; ++i) (*b)->send(to, payload);
  EXPECT_EQ((*b)->queued(), UdpBind::kMaxQueued);
  EXPECT_EQ((*b)->stats().tx_dropped, 500u);
  ASSERT_TRUE(runLoopUntil(io, [&] { return (*b)->queued() == 0; }));
  EXPECT_EQ((*b)->stats().tx_datagrams, UdpBind::kMaxQueued) << "everything queued was sent";
  // (How many arrive depends on the receiver's socket buffer, net.core.rmem_max: not ours.)
  ASSERT_TRUE(runLoopUntil(io, [&] { return got > 0; }));
  // And it keeps working after the overflow.
  ASSERT_TRUE(runLoopUntil(io, [&] {
    size_t before = got;
    (*b)->send(to, payload);
    io.restart();
    io.run_for(std::chrono::milliseconds(20));
    return got > before;
  }));
}

TEST(WgUdpTest, BindErrorsAreClear) {
  asio::io_context io;
  auto a = UdpBind::open(
      io, 0, [](const Endpoint&, std::span<uint8_t>) {}, "127.0.0.1");
  ASSERT_TRUE(a);
  auto b = UdpBind::open(
      io, (*a)->port(), [](const Endpoint&, std::span<uint8_t>) {}, "127.0.0.1");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("Address already in use"), std::string::npos) << b.error();
  auto c = UdpBind::open(
      io, 0, [](const Endpoint&, std::span<uint8_t>) {}, "not-an-ip");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().find("not an IP address"), std::string::npos) << c.error();
}

class WgUapiTest : public ::testing::Test {
 protected:
  WgUapiTest()
      : device_(clock_, DeviceOptions{},
                Device::Io{[](const Endpoint&, std::span<const uint8_t>) {},
                           [](std::span<const uint8_t>) {}}) {
    hooks_.listen_port = [this] { return port_; };
    hooks_.set_listen_port = [this](uint16_t p) -> Status {
      if (p == 1) return makeError("port 1 is taken");
      port_ = p;
      return {};
    };
  }
  int set(const std::string& body) {
    error_.clear();
    return uapiSet(device_, body, hooks_, &error_);
  }
  std::string hexKey() {
    Secret s = generatePrivateKey();
    return toHex(s.bytes());
  }
  std::string hexPub(PublicKey* out = nullptr) {
    PublicKey p = publicKeyOf(generatePrivateKey());
    if (out != nullptr) *out = p;
    return toHex(p);
  }

  ManualClock clock_;
  Device device_;
  UapiHooks hooks_;
  uint16_t port_ = 0;
  std::string error_;
};

TEST_F(WgUapiTest, SetThenGetRoundTrips) {
  std::string priv = hexKey();
  PublicKey pk{};
  std::string pub = hexPub(&pk);
  ASSERT_EQ(set("private_key=" + priv + "\nlisten_port=51820\npublic_key=" + pub +
                "\nendpoint=198.18.0.9:51821\npersistent_keepalive_interval=25\n"
                "replace_allowed_ips=true\nallowed_ip=100.64.0.2/32\n"
                "allowed_ip=fd7a:115c:a1e0::2/128\n"),
            0)
      << error_;
  EXPECT_EQ(port_, 51820);
  std::string get = uapiGet(device_, port_);
  EXPECT_NE(get.find("private_key=" + priv + "\n"), std::string::npos) << get;
  EXPECT_NE(get.find("listen_port=51820\n"), std::string::npos);
  EXPECT_NE(get.find("public_key=" + pub + "\n"), std::string::npos);
  EXPECT_NE(get.find("endpoint=198.18.0.9:51821\n"), std::string::npos);
  EXPECT_NE(get.find("persistent_keepalive_interval=25\n"), std::string::npos);
  EXPECT_NE(get.find("allowed_ip=100.64.0.2/32\n"), std::string::npos);
  EXPECT_NE(get.find("allowed_ip=fd7a:115c:a1e0::2/128\n"), std::string::npos);
  EXPECT_NE(get.find("last_handshake_time_sec=0\n"), std::string::npos);

  // Appending without replace_allowed_ips keeps the old list; with it, replaces it.
  ASSERT_EQ(set("public_key=" + pub + "\nallowed_ip=100.64.1.0/24\n"), 0) << error_;
  EXPECT_EQ(device_.peer(pk)->allowed_ips.size(), 3u);
  ASSERT_EQ(set("public_key=" + pub + "\nreplace_allowed_ips=true\nallowed_ip=100.64.1.0/24\n"), 0);
  EXPECT_EQ(device_.peer(pk)->allowed_ips.size(), 1u);
  // update_only does not create; remove removes.
  PublicKey other{};
  std::string other_hex = hexPub(&other);
  ASSERT_EQ(set("public_key=" + other_hex + "\nupdate_only=true\n"), 0);
  EXPECT_FALSE(device_.peer(other));
  ASSERT_EQ(set("public_key=" + pub + "\nremove=true\n"), 0);
  EXPECT_FALSE(device_.peer(pk));
}

TEST_F(WgUapiTest, BadInputGetsEinvalAndAClearReason) {
  std::string pub = hexPub();
  struct Case {
    std::string body, reason;
  } cases[] = {
      {"private_key=zz\n", "private_key"},
      {"listen_port=70000\n", "listen_port"},
      {"listen_port=1\n", "port 1 is taken"},
      {"endpoint=198.18.0.1:1\n", "before public_key"},
      {"public_key=" + pub + "\nallowed_ip=100.64.0.1/33\n", "100.64.0.1/33"},
      {"public_key=" + pub + "\nendpoint=nowhere\n", "nowhere"},
      {"public_key=" + pub + "\nprotocol_version=2\n", "protocol_version"},
      {"what=1\n", "unknown key: what"},
      {"no equals sign\n", "without '='"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(set(c.body), EINVAL) << c.body;
    EXPECT_NE(error_.find(c.reason), std::string::npos) << c.body << " → " << error_;
  }
}

// A request on the configuration socket; the answer up to the blank line (or EOF).
std::string request(const std::string& path, const std::string& text) {
  return test::unixRoundTrip(path, text, "\n\n");
}

TEST_F(WgUapiTest, SocketServesGetSetAndCountersAndIsOwnerOnly) {
  test::TempDir dir;
  asio::io_context io;
  std::string path = dir.file("wg0.sock");
  auto server = UapiServer::listen(io, path, device_, hooks_);
  ASSERT_TRUE(server) << server.error();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << "the socket hands out private keys: owner only";

  // The client blocks, so the loop runs on a thread while it talks.
  std::thread loop([&] {
    auto guard = asio::make_work_guard(io);
    io.run_for(test::scaled(10s));
  });
  std::string priv = hexKey();
  EXPECT_EQ(request(path, "set=1\nprivate_key=" + priv + "\nlisten_port=4242\n\n"), "errno=0\n\n");
  std::string get = request(path, "get=1\n\n");
  EXPECT_NE(get.find("private_key=" + priv), std::string::npos) << get;
  EXPECT_NE(get.find("listen_port=4242\n"), std::string::npos) << get;
  EXPECT_NE(get.find("errno=0\n\n"), std::string::npos) << get;
  EXPECT_EQ(request(path, "set=1\nbogus=1\n\n"), "errno=" + std::to_string(EINVAL) + "\n\n");
  std::string counters = request(path, "wsa_counters=1\n\n");
  EXPECT_NE(counters.find("handshakes_completed=0\n"), std::string::npos) << counters;
  EXPECT_NE(counters.find("drop_replay=0\n"), std::string::npos) << counters;
  EXPECT_EQ(request(path, "frobnicate=1\n\n"), "errno=" + std::to_string(EPROTO) + "\n\n");
  // A request that never ends is cut off at 1 MiB: the connection closes, nothing is applied.
  std::string huge = "set=1\n" + std::string(2u << 20, 'x');
  EXPECT_EQ(request(path, huge), "");
  EXPECT_EQ(request(path, "get=1\n\n").find("errno=0"), get.find("errno=0")) << "still serving";
  io.stop();
  loop.join();
}

}  // namespace
}  // namespace wsa::wg
