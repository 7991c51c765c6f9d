// control::RelayStream against an in-process gRPC server that plays the relay: an echo (each
// datagram comes back from the key it was sent to), one that refuses the hello, and one that
// stops reading after the hello so that the client's bound is reached.

#include "wsa/control/relay_stream.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "unit/control/test_server.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"

namespace wsa::control {
namespace {

namespace ov = overlay::v1;
using namespace std::chrono_literals;

enum class Mode { kEcho, kRefuse, kStall };

// The tickets the server saw (hello's and later ones), and whether calls carried a token.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> ticket_bodies;
  int calls_with_token = 0;
};

class Reactor final : public test::QueuedReactor<ov::RelayRequest, ov::RelayResponse> {
 public:
  Reactor(Mode mode, Seen& seen) : mode_(mode), seen_(seen) { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (!ok) return finishWhenIdle(grpc::Status::OK);
    if (req_.has_ticket()) {
      std::lock_guard l(seen_.mu);
      seen_.ticket_bodies.push_back(req_.ticket().body());
      seen_.cv.notify_all();
    }
    if (!hello_) {
      hello_ = true;
      if (mode_ == Mode::kRefuse)
        return finishWhenIdle({grpc::StatusCode::PERMISSION_DENIED, "no"});
      write(ov::RelayResponse());         // the acknowledgement
      if (mode_ == Mode::kStall) return;  // never reads again
      StartRead(&req_);
      return;
    }
    ov::RelayResponse r;
    for (const auto& p : req_.packets()) *r.add_packets() = p;
    write(std::move(r));
    StartRead(&req_);
  }

 private:
  Mode mode_;
  Seen& seen_;
  ov::RelayRequest req_;
  bool hello_ = false;
};

class Service final : public ov::Overlay::CallbackService {
 public:
  explicit Service(Mode mode) : mode_(mode) {}
  grpc::ServerBidiReactor<ov::RelayRequest, ov::RelayResponse>* Relay(
      grpc::CallbackServerContext* call) override {
    if (call->client_metadata().count("authorization") > 0) {
      std::lock_guard l(seen.mu);
      ++seen.calls_with_token;
    }
    return new Reactor(mode_, seen);
  }
  Seen seen;

 private:
  Mode mode_;
};

// What the stream reports, gathered from gRPC threads.
struct Observed {
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  bool done = false;
  int code = -1;
  std::vector<std::pair<RelayStream::Key, std::string>> packets;

  template <typename P>
  bool waitFor(P pred, std::chrono::milliseconds timeout) {
    std::unique_lock l(mu);
    return cv.wait_for(l, timeout, pred);
  }
};

class RelayStreamTest : public ::testing::Test {
 protected:
  void serve(Mode mode) {
    service_ = std::make_unique<Service>(mode);
    server_ = std::make_unique<test::LoopbackServer>(service_.get());
    ASSERT_TRUE(server_->ok());
    channel_ = server_->channel();
  }
  std::shared_ptr<RelayStream> open(size_t max_queued = RelayStream::kDefaultMaxQueued,
                                    const std::string& token = "token",
                                    const std::string& ticket = "") {
    RelayStream::Callbacks cb;
    cb.ticket = ticket;
    cb.post = [](std::function<void()> f) { f(); };  // inline: state below is locked
    cb.on_ready = [this] {
      std::lock_guard l(obs_.mu);
      obs_.ready = true;
      obs_.cv.notify_all();
    };
    cb.on_packets = [this](RelayStream::Packets p) {
      std::lock_guard l(obs_.mu);
      for (auto& x : p) obs_.packets.push_back(std::move(x));
      obs_.cv.notify_all();
    };
    cb.on_done = [this](int code, const std::string&) {
      std::lock_guard l(obs_.mu);
      obs_.done = true;
      obs_.code = code;
      obs_.cv.notify_all();
    };
    RelayStream::Key hello{};
    hello.fill(7);
    return RelayStream::start(channel_, token, hello, std::move(cb), max_queued);
  }

  Observed obs_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<test::LoopbackServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

RelayStream::Key key(uint8_t b) {
  RelayStream::Key k{};
  k.fill(b);
  return k;
}

TEST_F(RelayStreamTest, CarriesATicketInTheHelloAndFresherOnesLaterWithoutAToken) {
  serve(Mode::kEcho);
  ov::RelayTicket t;
  t.set_body("first");
  auto s = open(RelayStream::kDefaultMaxQueued, /*token=*/"", t.SerializeAsString());
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.ready; }, 10s));
  t.set_body("second");
  s->setTicket(t.SerializeAsString());  // nothing else to send: goes at once
  {
    std::unique_lock l(service_->seen.mu);
    ASSERT_TRUE(service_->seen.cv.wait_for(
        l, 10s, [&] { return service_->seen.ticket_bodies.size() >= 2; }));
    EXPECT_EQ(service_->seen.ticket_bodies, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(service_->seen.calls_with_token, 0);  // an empty token sends no authorization
  }
  // Datagrams still flow after it.
  std::string d = "after the ticket";
  ASSERT_TRUE(s->send(key(1), {reinterpret_cast<const uint8_t*>(d.data()), d.size()}));
  ASSERT_TRUE(obs_.waitFor([&] { return !obs_.packets.empty(); }, 10s));
  EXPECT_EQ(obs_.packets[0].second, d);
  s->cancel();
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.done; }, 10s));
}

TEST_F(RelayStreamTest, DropsBeforeTheHelloIsAcknowledgedThenCarriesEveryDatagramInOrder) {
  serve(Mode::kEcho);
  auto s = open();
  std::string early = "too early";
  // Not yet acknowledged (the server answers on another thread; at worst this races the ack,
  // which the next assertion tells apart).
  bool sent_early = s->send(key(1), {reinterpret_cast<const uint8_t*>(early.data()), early.size()});
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.ready; }, 10s));
  EXPECT_EQ(s->stats().dropped_not_ready, sent_early ? 0u : 1u);
  // In rounds that fit the queue's bound, each round echoed before the next.
  constexpr int kCount = 2000, kRound = 500;
  size_t base = sent_early ? 1 : 0;
  for (int i = 0; i < kCount; ++i) {
    std::string d = "datagram " + std::to_string(i);
    ASSERT_TRUE(s->send(key(static_cast<uint8_t>(i % 3)),
                        {reinterpret_cast<const uint8_t*>(d.data()), d.size()}))
        << i;
    if ((i + 1) % kRound == 0) {
      size_t want = base + static_cast<size_t>(i + 1);
      ASSERT_TRUE(obs_.waitFor([&] { return obs_.packets.size() >= want; }, 20s))
          << obs_.packets.size();
    }
  }
  size_t want = base + static_cast<size_t>(kCount);
  std::unique_lock l(obs_.mu);
  ASSERT_EQ(obs_.packets.size(), want);
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(obs_.packets[base + static_cast<size_t>(i)].second, "datagram " + std::to_string(i));
    ASSERT_EQ(obs_.packets[base + static_cast<size_t>(i)].first, key(static_cast<uint8_t>(i % 3)));
  }
  l.unlock();
  auto st = s->stats();
  EXPECT_EQ(st.packets_sent, want);
  EXPECT_EQ(st.packets_received, want);
  EXPECT_EQ(st.dropped_queue_full, 0u);
  s->cancel();
}

TEST_F(RelayStreamTest, RefusedHelloEndsTheStreamWithTheServersCode) {
  serve(Mode::kRefuse);
  auto s = open();
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.done; }, 10s));
  EXPECT_EQ(obs_.code, static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_FALSE(obs_.ready);
  EXPECT_FALSE(s->ready());
  std::string d = "x";
  EXPECT_FALSE(s->send(key(1), {reinterpret_cast<const uint8_t*>(d.data()), d.size()}));
}

TEST_F(RelayStreamTest, AtTheBoundDatagramsAreDroppedAndCountedNeverQueuedBeyondIt) {
  serve(Mode::kStall);
  constexpr size_t kBound = 256;
  auto s = open(kBound);
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.ready; }, 10s));
  // The server reads nothing more: gRPC's flow-control windows fill, writes stop completing,
  // and the queue reaches its bound. 20,000 datagrams of 1200 bytes (24 MB) is far beyond
  // what the windows hold.
  std::string d(1200, 'x');
  size_t accepted = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    if (s->send(key(2), {reinterpret_cast<const uint8_t*>(d.data()), d.size()})) {
      ++accepted;
    } else {
      ++refused;
    }
    ASSERT_LE(s->stats().queued, kBound);
  }
  auto st = s->stats();
  EXPECT_GT(refused, 0u);
  EXPECT_EQ(st.dropped_queue_full, refused);
  EXPECT_EQ(st.queued, kBound);  // full, and held there
  // Accepted = sent + queued + at most one message in flight.
  EXPECT_GE(accepted, st.packets_sent + st.queued);
  EXPECT_LE(accepted, st.packets_sent + st.queued + RelayStream::kMaxPacketsPerMessage);
  s->cancel();
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.done; }, 10s));
  EXPECT_EQ(obs_.code, static_cast<int>(grpc::StatusCode::CANCELLED));
  EXPECT_EQ(s->stats().queued, 0u);  // released at the end
}

}  // namespace
}  // namespace wsa::control
