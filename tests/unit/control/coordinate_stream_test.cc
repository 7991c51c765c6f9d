// control::CoordinateStream against an in-process gRPC server that plays the coordinator: an
// echo (each request answered with a response naming its node id), one that ends the stream
// with an error, and one that stops reading after the first request so that the client's
// bound is reached.

#include "wsa/control/coordinate_stream.h"

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

enum class Mode { kEcho, kEndAfterFirst, kStall };

class Reactor final : public test::QueuedReactor<ov::CoordinateRequest, ov::CoordinateResponse> {
 public:
  explicit Reactor(Mode mode) : mode_(mode) { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (!ok) return finishWhenIdle(grpc::Status::OK);
    ov::CoordinateResponse r;
    r.set_error(req_.update_self().node().id());
    write(std::move(r));
    if (mode_ == Mode::kEndAfterFirst) {
      return finishWhenIdle({grpc::StatusCode::UNAVAILABLE, "going away"});
    }
    if (mode_ == Mode::kStall) return;  // never reads again
    StartRead(&req_);
  }

 private:
  Mode mode_;
  ov::CoordinateRequest req_;
};

class Service final : public ov::Overlay::CallbackService {
 public:
  explicit Service(Mode mode) : mode_(mode) {}
  grpc::ServerBidiReactor<ov::CoordinateRequest, ov::CoordinateResponse>* Coordinate(
      grpc::CallbackServerContext*) override {
    return new Reactor(mode_);
  }

 private:
  Mode mode_;
};

// What the stream reports, gathered from gRPC threads.
struct Observed {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> ids;  // of the responses, in order
  int done = 0;
  int code = -1;
  std::string message;
  bool context_seen = false;

  template <typename P>
  bool waitFor(P pred, std::chrono::milliseconds timeout) {
    std::unique_lock l(mu);
    return cv.wait_for(l, timeout, pred);
  }
};

ov::CoordinateRequest request(const std::string& id, size_t padding = 0) {
  ov::CoordinateRequest r;
  r.mutable_update_self()->mutable_node()->set_id(id);
  if (padding > 0)
    r.mutable_update_self()->mutable_node()->add_endpoints(std::string(padding, 'p'));
  return r;
}

class CoordinateStreamTest : public ::testing::Test {
 protected:
  void serve(Mode mode) {
    service_ = std::make_unique<Service>(mode);
    server_ = std::make_unique<test::LoopbackServer>(service_.get());
    ASSERT_TRUE(server_->ok());
    channel_ = server_->channel();
  }
  std::shared_ptr<CoordinateStream> open() {
    CoordinateStream::Callbacks cb;
    cb.post = [](std::function<void()> f) { f(); };  // inline: state below is locked
    cb.on_response = [this](ov::CoordinateResponse r) {
      std::lock_guard l(obs_.mu);
      obs_.ids.push_back(r.error());
      obs_.cv.notify_all();
    };
    cb.on_done = [this](int code, std::string message) {
      std::lock_guard l(obs_.mu);
      ++obs_.done;
      obs_.code = code;
      obs_.message = std::move(message);
      obs_.cv.notify_all();
    };
    cb.on_context = [this](grpc::ClientContext* c) {
      std::lock_guard l(obs_.mu);
      obs_.context_seen = c != nullptr;
    };
    return CoordinateStream::start(channel_, "token", std::move(cb));
  }

  Observed obs_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<test::LoopbackServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(CoordinateStreamTest, RequestsAndResponsesKeepTheirOrder) {
  serve(Mode::kEcho);
  auto s = open();
  {
    std::lock_guard l(obs_.mu);
    EXPECT_TRUE(obs_.context_seen);  // handed over before the call started
  }
  // In rounds that fit the queue's bound, each round answered before the next.
  constexpr int kCount = 640, kRound = 64;
  for (int i = 0; i < kCount; ++i) {
    s->send(request("node " + std::to_string(i)));
    if ((i + 1) % kRound == 0) {
      size_t want = static_cast<size_t>(i + 1);
      ASSERT_TRUE(obs_.waitFor([&] { return obs_.ids.size() >= want || obs_.done > 0; }, 20s));
      std::lock_guard l(obs_.mu);
      ASSERT_EQ(obs_.done, 0) << obs_.message;
    }
  }
  {
    std::lock_guard l(obs_.mu);
    ASSERT_EQ(obs_.ids.size(), static_cast<size_t>(kCount));
    for (int i = 0; i < kCount; ++i)
      EXPECT_EQ(obs_.ids[static_cast<size_t>(i)], "node " + std::to_string(i));
  }
  s->cancel();
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.done > 0; }, 10s));
  EXPECT_EQ(obs_.code, static_cast<int>(grpc::StatusCode::CANCELLED));
  // A request after the end is dropped.
  s->send(request("late"));
  std::lock_guard l(obs_.mu);
  EXPECT_EQ(obs_.done, 1);
}

TEST_F(CoordinateStreamTest, TheServersEndArrivesOnceAfterItsResponses) {
  serve(Mode::kEndAfterFirst);
  auto s = open();
  s->send(request("first"));
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.done > 0; }, 10s));
  std::lock_guard l(obs_.mu);
  EXPECT_EQ(obs_.code, static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_EQ(obs_.message, "going away");
  EXPECT_EQ(obs_.ids, std::vector<std::string>{"first"});
  EXPECT_EQ(obs_.done, 1);
}

TEST_F(CoordinateStreamTest, BeyondTheBoundTheStreamIsCancelled) {
  serve(Mode::kStall);
  auto s = open();
  s->send(request("first"));
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.ids.size() == 1; }, 10s));
  // The server reads nothing more: gRPC's flow-control windows fill, writes stop completing,
  // and the queue reaches its bound; the request beyond it cancels the stream. 64 KiB
  // requests, far more of them than the windows and the bound hold.
  constexpr size_t kPadding = 64 * 1024;
  int sent = 0;
  for (; sent < 2000; ++sent) {
    {
      std::lock_guard l(obs_.mu);
      if (obs_.done > 0) break;
    }
    s->send(request("r" + std::to_string(sent), kPadding));
  }
  ASSERT_TRUE(obs_.waitFor([&] { return obs_.done > 0; }, 20s)) << sent;
  std::lock_guard l(obs_.mu);
  EXPECT_EQ(obs_.code, static_cast<int>(grpc::StatusCode::CANCELLED));
  EXPECT_GT(sent, static_cast<int>(CoordinateStream::kMaxQueued));
  EXPECT_EQ(obs_.done, 1);
}

}  // namespace
}  // namespace wsa::control
