// The engine's receive path on a real UDP socket: probe datagrams go to PeerPaths and never to
// the WireGuard device, whoever sends them; STUN answers go to the owner's receiver.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>

#include "overlay/probe.h"
#include "wsa/overlay/engine.h"

namespace wsa::overlay {
namespace {

using namespace std::chrono_literals;

class EngineProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = makeLoopClock(io_);
    EngineOptions o;
    o.addresses = {"100.64.0.1"};
    auto e = Engine::start(io_, *clock_, o);
    ASSERT_TRUE(e) << e.error();
    engine_ = std::move(*e);
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    if (engine_) engine_->shutdown();
    Engine::drainCompletions(io_);
  }
  void sendToEngine(const std::vector<uint8_t>& d) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(engine_->udpPort());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::sendto(fd_, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(d.size()));
  }
  // Runs the loop until `done` or 5 s.
  bool runUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(10ms);
    }
    return done();
  }

  asio::io_context io_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<Engine> engine_;
  int fd_ = -1;
};

TEST_F(EngineProbeTest, ProbesFromStrangersAreCountedAndNeverReachTheDevice) {
  wg::Secret stranger = wg::generatePrivateKey();
  auto key = *probe::sharedKey(stranger, engine_->publicKey());
  probe::Message ping;
  ping.txid = probe::newTxId();
  for (int i = 0; i < 100; ++i) sendToEngine(probe::seal(wg::publicKeyOf(stranger), key, ping));
  sendToEngine({probe::kMagic.begin(), probe::kMagic.end()});  // the magic alone
  const auto& ps = engine_->paths().stats();
  ASSERT_TRUE(runUntil([&] {
    return ps.dropped(ProbeDrop::kUnknownSender) == 100 && ps.dropped(ProbeDrop::kMalformed) == 1;
  }));
  EXPECT_EQ(ps.pongs_sent, 0u);
  // The device saw none of them: not one unknown-type or short drop, no handshake attempt.
  const auto& dc = engine_->device().counters();
  for (size_t i = 0; i < static_cast<size_t>(wg::Drop::kCount); ++i) {
    EXPECT_EQ(dc.drops[i], 0u) << wg::dropName(static_cast<wg::Drop>(i));
  }
  // A WireGuard-looking datagram does reach the device (and is dropped there as short).
  sendToEngine({1, 0, 0, 0, 9});
  ASSERT_TRUE(runUntil([&] { return dc.dropped(wg::Drop::kShort) == 1; }));
}

TEST_F(EngineProbeTest, StunAnswersGoToTheOwnersReceiver) {
  int taken = 0;
  engine_->setStunReceiver([&](const wg::Endpoint&, std::span<const uint8_t>) {
    ++taken;
    return true;
  });
  // A Binding success response header (type 0x0101, no attributes, the magic cookie).
  std::vector<uint8_t> d = {0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
  d.resize(20, 0x07);
  sendToEngine(d);
  ASSERT_TRUE(runUntil([&] { return taken == 1; }));
  const auto& dc = engine_->device().counters();
  for (size_t i = 0; i < static_cast<size_t>(wg::Drop::kCount); ++i) EXPECT_EQ(dc.drops[i], 0u);
}

}  // namespace
}  // namespace wsa::overlay
