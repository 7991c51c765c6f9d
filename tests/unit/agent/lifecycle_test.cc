#include "agent/lifecycle.h"

#include <gtest/gtest.h>

#include "unit/agent/fake_api.h"

namespace wsa::agent {
namespace {

using test::FakeApi;

std::vector<std::string> sentStates(const FakeApi& api) {
  std::vector<std::string> out;
  for (const auto& c : api.calls) {
    if (c.method != "UpdateLifecycle") continue;
    auto* r = static_cast<const v1::UpdateLifecycleRequest*>(c.request.get());
    out.push_back(Lifecycle::name(r->lifecycle().state()));
  }
  return out;
}

TEST(Lifecycle, OnlyForwardMovesWithTimestamps) {
  ManualClock clock;
  Lifecycle lc(clock);
  EXPECT_EQ(lc.current(), v1::LIFECYCLE_STATE_CREATED);
  EXPECT_TRUE(lc.set(v1::LIFECYCLE_STATE_STARTING));
  clock.advance(std::chrono::seconds(2));
  EXPECT_TRUE(lc.set(v1::LIFECYCLE_STATE_READY));
  EXPECT_FALSE(lc.set(v1::LIFECYCLE_STATE_STARTING));  // backwards
  EXPECT_FALSE(lc.set(v1::LIFECYCLE_STATE_READY));     // same
  ASSERT_EQ(lc.states().size(), 3u);
  EXPECT_EQ(lc.states()[2].changed_at - lc.states()[1].changed_at, std::chrono::seconds(2));
  // Skipping ahead is allowed (start_error straight to shutting_down, etc.).
  EXPECT_TRUE(lc.set(v1::LIFECYCLE_STATE_OFF));
}

TEST(Lifecycle, ReporterSendsInOrderOneAtATime) {
  ManualClock clock;
  Lifecycle lc(clock);
  FakeApi api;
  auto r = makeLifecycleReporter(lc, api);
  std::optional<Status> exit;
  r->start([&](Status s) { exit = s; });
  EXPECT_TRUE(api.calls.empty());  // created is implicit and never sent
  lc.set(v1::LIFECYCLE_STATE_STARTING);
  lc.set(v1::LIFECYCLE_STATE_READY);
  ASSERT_EQ(sentStates(api), std::vector<std::string>{"starting"});  // one in flight
  api.answer("UpdateLifecycle");
  ASSERT_EQ(sentStates(api), std::vector<std::string>{"ready"});
  api.answer("UpdateLifecycle");
  EXPECT_TRUE(lc.allReported());
  EXPECT_FALSE(exit.has_value());
}

TEST(Lifecycle, ResumesFromLastAcknowledgedAfterReconnect) {
  ManualClock clock;
  Lifecycle lc(clock);
  lc.set(v1::LIFECYCLE_STATE_STARTING);
  lc.set(v1::LIFECYCLE_STATE_READY);
  {
    FakeApi api;
    auto r = makeLifecycleReporter(lc, api);
    std::optional<Status> exit;
    r->start([&](Status s) { exit = s; });
    api.answer("UpdateLifecycle");                                     // starting acked
    api.answer("UpdateLifecycle", {RpcStatus::kUnavailable, "gone"});  // ready lost
    ASSERT_TRUE(exit.has_value());
    EXPECT_FALSE(exit->ok());  // tears the connection down
  }
  FakeApi api2;
  auto r2 = makeLifecycleReporter(lc, api2);
  r2->start([](Status) {});
  // Only "ready" again: "starting" is not re-emitted.
  EXPECT_EQ(sentStates(api2), std::vector<std::string>{"ready"});
  api2.answer("UpdateLifecycle");
  EXPECT_TRUE(lc.allReported());
  EXPECT_EQ(lc.lastReported(), v1::LIFECYCLE_STATE_READY);
}

TEST(Lifecycle, StopWaitsForTheCallInFlight) {
  ManualClock clock;
  Lifecycle lc(clock);
  FakeApi api;
  auto r = makeLifecycleReporter(lc, api);
  std::optional<Status> exit;
  r->start([&](Status s) { exit = s; });
  lc.set(v1::LIFECYCLE_STATE_STARTING);
  r->stop();
  EXPECT_FALSE(exit.has_value());
  api.answer("UpdateLifecycle");
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->ok());
  EXPECT_TRUE(lc.allReported());
}

}  // namespace
}  // namespace wsa::agent

#include "agent/report_queue.h"

namespace wsa::agent {
namespace {

ReportQueue<v1::ReportConnectionRequest> makeQueue(size_t capacity) {
  return ReportQueue<v1::ReportConnectionRequest>(
      "connection reports", capacity,
      [](AgentApi& api, const v1::ReportConnectionRequest& r,
         std::function<void(const RpcStatus&)> done) {
        api.reportConnection(r,
                             [done](const RpcStatus& s, v1::ReportConnectionResponse) { done(s); });
      });
}

v1::ReportConnectionRequest report(const std::string& id) {
  v1::ReportConnectionRequest r;
  r.mutable_connection()->set_id(id);
  return r;
}

TEST(ReportQueue, BoundedDropsOldestAndCounts) {
  auto q = makeQueue(3);
  for (int i = 0; i < 5; ++i) q.push(report("c" + std::to_string(i)));
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.dropped(), 2u);
  test::FakeApi api;
  auto r = q.makeRoutine(api);
  r->start([](Status) {});
  std::vector<std::string> sent;
  while (!api.calls.empty()) {
    sent.push_back(api.request<v1::ReportConnectionRequest>("ReportConnection").connection().id());
    api.answer("ReportConnection");
  }
  EXPECT_EQ(sent, (std::vector<std::string>{"c2", "c3", "c4"}));
  EXPECT_TRUE(q.empty());
}

TEST(ReportQueue, TransientFailureKeepsTheReportPermanentDropsIt) {
  auto q = makeQueue(10);
  q.push(report("a"));
  q.push(report("b"));
  test::FakeApi api;
  std::optional<Status> exit;
  auto r = q.makeRoutine(api);
  r->start([&](Status s) { exit = s; });
  api.answer("ReportConnection", {RpcStatus::kInvalidArgument, "bad"});  // "a": dropped
  api.answer("ReportConnection", {RpcStatus::kUnavailable, "down"});     // "b": kept
  ASSERT_TRUE(exit.has_value());
  EXPECT_FALSE(exit->ok());
  EXPECT_EQ(q.size(), 1u);
  test::FakeApi api2;
  q.makeRoutine(api2)->start([](Status) {});
  EXPECT_EQ(api2.request<v1::ReportConnectionRequest>("ReportConnection").connection().id(), "b");
}

}  // namespace
}  // namespace wsa::agent
