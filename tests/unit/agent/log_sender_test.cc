#include "agent/log_sender.h"

#include <gtest/gtest.h>

#include "unit/agent/fake_api.h"

namespace wsa::agent {
namespace {

using std::chrono::milliseconds;
using test::FakeApi;

class LogSenderTest : public ::testing::Test {
 protected:
  void start(LogSenderOptions o = {}) {
    sender = std::make_unique<LogSender>(clock, "instance-1", o);
    routine = sender->makeRoutine(api);
    routine->start([this](Status s) { exit = s; });
  }
  std::vector<std::string> outputs(size_t call = 0) {
    std::vector<std::string> out;
    auto req = api.request<v1::BatchCreateLogsRequest>("BatchCreateLogs", call);
    for (const auto& l : req.logs()) out.push_back(l.output());
    return out;
  }
  ManualClock clock;
  FakeApi api;
  std::unique_ptr<LogSender> sender;
  std::shared_ptr<Routine> routine;
  std::optional<Status> exit;
};

TEST_F(LogSenderTest, BatchesAboutOnceASecondInOrder) {
  start();
  clock.advance(milliseconds(1000));  // the source does not exist yet: nothing to send
  EXPECT_TRUE(api.calls.empty());
  sender->enqueue("s1", "setup", v1::LOG_LEVEL_INFO, "one");
  sender->enqueue("s1", "setup", v1::LOG_LEVEL_ERROR, "two");
  clock.advance(milliseconds(250));  // a new source is due at the next wake-up
  ASSERT_EQ(api.pending("BatchCreateLogs"), 1u);
  auto req = api.request<v1::BatchCreateLogsRequest>("BatchCreateLogs");
  EXPECT_EQ(req.log_source_id(), "s1");
  EXPECT_EQ(req.log_source_name(), "setup");
  EXPECT_EQ(req.agent_instance_id(), "instance-1");
  ASSERT_EQ(req.logs_size(), 2);
  EXPECT_EQ(req.logs(0).sequence(), 1u);
  EXPECT_EQ(req.logs(1).sequence(), 2u);
  EXPECT_EQ(req.logs(1).level(), v1::LOG_LEVEL_ERROR);
  sender->enqueue("s1", "setup", v1::LOG_LEVEL_INFO, "three");
  api.answer("BatchCreateLogs");
  EXPECT_EQ(sender->stats().sent_lines, 2u);
  // The next batch waits for the flush interval.
  clock.advance(milliseconds(750));
  EXPECT_EQ(api.pending("BatchCreateLogs"), 0u);
  clock.advance(milliseconds(250));
  ASSERT_EQ(api.pending("BatchCreateLogs"), 1u);
  EXPECT_EQ(outputs(), std::vector<std::string>{"three"});
  EXPECT_EQ(api.request<v1::BatchCreateLogsRequest>("BatchCreateLogs").logs(0).sequence(), 3u);
}

TEST_F(LogSenderTest, LinesStayQueuedUntilAcknowledgedAndSurviveReconnect) {
  start();
  sender->enqueue("s1", "setup", v1::LOG_LEVEL_INFO, "a");
  sender->enqueue("s1", "setup", v1::LOG_LEVEL_INFO, "b");
  clock.advance(milliseconds(250));
  api.answer("BatchCreateLogs", {RpcStatus::kUnavailable, "connection lost"});
  ASSERT_TRUE(exit.has_value());
  EXPECT_FALSE(exit->ok());
  EXPECT_EQ(sender->stats().queued_lines, 2u);
  // A new connection sends the same lines with the same sequence numbers (the server drops
  // whatever it had already stored).
  FakeApi api2;
  auto r2 = sender->makeRoutine(api2);
  r2->start([](Status) {});
  auto req = api2.request<v1::BatchCreateLogsRequest>("BatchCreateLogs");
  ASSERT_EQ(req.logs_size(), 2);
  EXPECT_EQ(req.logs(0).sequence(), 1u);
  EXPECT_EQ(req.logs(0).output(), "a");
  api2.answer("BatchCreateLogs");
  EXPECT_TRUE(sender->empty());
}

TEST_F(LogSenderTest, QueueBoundDropsNewLinesAndCountsThem) {
  LogSenderOptions o;
  o.max_queued_bytes = 100;
  o.per_line_overhead = 0;
  start(o);
  int accepted = 0;
  for (int i = 0; i < 20; ++i) {
    accepted += sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, std::string(10, 'x')) ? 1 : 0;
  }
  EXPECT_EQ(accepted, 10);
  auto st = sender->stats();
  EXPECT_EQ(st.queued_bytes, 100u);
  EXPECT_EQ(st.dropped_queue_full, 10u);
  // Once acknowledged, room frees up again.
  clock.advance(milliseconds(250));
  api.answer("BatchCreateLogs");
  EXPECT_TRUE(sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, "fits again"));
}

TEST_F(LogSenderTest, BatchesAreBoundedInBytes) {
  LogSenderOptions o;
  o.max_batch_bytes = 30;
  o.per_line_overhead = 0;
  start(o);
  for (int i = 0; i < 5; ++i)
    sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, std::string(10, 'a' + i));
  sender->flush("s");
  clock.advance(milliseconds(250));
  EXPECT_EQ(outputs().size(), 3u);
  api.answer("BatchCreateLogs");
  // The rest goes at once: a flush was requested and lines remain.
  ASSERT_EQ(api.pending("BatchCreateLogs"), 1u);
  EXPECT_EQ(outputs().size(), 2u);
}

TEST_F(LogSenderTest, LogLimitExceededStopsSendingAndDiscards) {
  start();
  sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, "x");
  clock.advance(milliseconds(250));
  v1::BatchCreateLogsResponse resp;
  resp.set_log_limit_exceeded(true);
  api.answer("BatchCreateLogs", {}, &resp);
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->ok());  // not an error: the connection stays
  EXPECT_TRUE(sender->limitExceeded());
  EXPECT_FALSE(sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, "y"));
  EXPECT_TRUE(sender->empty());
  // A new connection does not try again.
  FakeApi api2;
  std::optional<Status> exit2;
  sender->makeRoutine(api2)->start([&](Status s) { exit2 = s; });
  EXPECT_TRUE(exit2.has_value());
  clock.advance(milliseconds(2000));
  EXPECT_TRUE(api2.calls.empty());
}

TEST_F(LogSenderTest, SourcesTakeTurnsOldestFlushedFirst) {
  start();
  sender->enqueue("a", "a", v1::LOG_LEVEL_INFO, "a1");
  sender->enqueue("b", "b", v1::LOG_LEVEL_INFO, "b1");
  clock.advance(milliseconds(250));
  auto first = api.request<v1::BatchCreateLogsRequest>("BatchCreateLogs").log_source_id();
  api.answer("BatchCreateLogs");
  // The other source goes next, immediately.
  ASSERT_EQ(api.pending("BatchCreateLogs"), 1u);
  auto second = api.request<v1::BatchCreateLogsRequest>("BatchCreateLogs").log_source_id();
  EXPECT_NE(first, second);
}

TEST_F(LogSenderTest, OverlongLinesAreDroppedAndInvalidUtf8Sanitized) {
  LogSenderOptions o;
  o.max_line_bytes = 8;
  start(o);
  EXPECT_FALSE(sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, "0123456789"));
  EXPECT_EQ(sender->stats().dropped_line_too_long, 1u);
  EXPECT_TRUE(sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, "a\xff"));
  clock.advance(milliseconds(250));
  EXPECT_EQ(outputs(), std::vector<std::string>{"a\xef\xbf\xbd"});
}

TEST_F(LogSenderTest, StopLetsTheInFlightBatchFinish) {
  start();
  sender->enqueue("s", "s", v1::LOG_LEVEL_INFO, "x");
  clock.advance(milliseconds(250));
  routine->stop();
  EXPECT_FALSE(exit.has_value());
  api.answer("BatchCreateLogs");
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->ok());
  EXPECT_TRUE(sender->empty());
  EXPECT_EQ(clock.pendingTimers(), 0u);
}

}  // namespace
}  // namespace wsa::agent
