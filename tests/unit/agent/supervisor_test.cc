#include "agent/supervisor.h"

#include <gtest/gtest.h>

#include "agent/backoff.h"

namespace wsa::agent {
namespace {

// A routine the test drives by hand.
struct Manual {
  Routine::Exit exit;
  bool started = false;
  bool stop_requested = false;
  std::shared_ptr<Routine> routine() {
    return makeRoutine(
        [this](Routine::Exit e) {
          started = true;
          exit = std::move(e);
        },
        [this] { stop_requested = true; });
  }
  void finish(Status s = Status::success()) {
    auto e = std::move(exit);
    e(std::move(s));
  }
};

TEST(Supervisor, FirstErrorTearsDownAndIsReportedOnceAllExited) {
  std::optional<Status> done;
  Supervisor sup({[&](Status s) { done = s; }, nullptr});
  Manual a, b, c;
  sup.add("a", Behavior::kStop, a.routine());
  sup.add("b", Behavior::kRemain, b.routine());
  sup.add("c", Behavior::kStop, c.routine());
  sup.start();
  EXPECT_TRUE(a.started && b.started && c.started);
  a.finish(makeError("boom"));
  // Everyone else is asked to stop; the supervisor waits for them.
  EXPECT_TRUE(b.stop_requested);
  EXPECT_TRUE(c.stop_requested);
  EXPECT_FALSE(done.has_value());
  // Errors from routines we stopped are cancellation, not errors.
  b.finish(makeError("cancelled"));
  c.finish();
  ASSERT_TRUE(done.has_value());
  EXPECT_FALSE(done->ok());
  EXPECT_EQ(done->error(), "a: boom");
}

TEST(Supervisor, GracefulShutdownStopsOnlyStopRoutines) {
  std::optional<Status> done;
  Supervisor sup({[&](Status s) { done = s; }, nullptr});
  Manual stop_r, remain_r;
  sup.add("metadata", Behavior::kStop, stop_r.routine());
  sup.add("logs", Behavior::kRemain, remain_r.routine());
  sup.start();
  sup.beginGracefulShutdown();
  EXPECT_TRUE(stop_r.stop_requested);
  EXPECT_FALSE(remain_r.stop_requested);
  stop_r.finish(makeError("cancelled by our stop"));
  EXPECT_FALSE(done.has_value());
  EXPECT_EQ(sup.runningNames(), std::vector<std::string>{"logs"});
  sup.stopAll();
  EXPECT_TRUE(remain_r.stop_requested);
  remain_r.finish();
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->ok());
}

TEST(Supervisor, CleanExitsDoNotTearDown) {
  std::optional<Status> done;
  Supervisor sup({[&](Status s) { done = s; }, nullptr});
  Manual once, forever;
  sup.add("manifest", Behavior::kStop, once.routine());
  sup.add("events", Behavior::kRemain, forever.routine());
  sup.start();
  once.finish();
  EXPECT_FALSE(forever.stop_requested);
  EXPECT_FALSE(done.has_value());
}

TEST(Supervisor, RoutineFailingDuringStartStopsTheRest) {
  std::optional<Status> done;
  Supervisor sup({[&](Status s) { done = s; }, nullptr});
  sup.add("fails", Behavior::kStop,
          makeRoutine([](Routine::Exit e) { e(makeError("no")); }, nullptr));
  Manual later;
  sup.add("later", Behavior::kStop, later.routine());
  sup.start();
  // "later" never started, or was stopped right away; either way the supervisor is done.
  if (later.started) later.finish();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->error(), "fails: no");
}

TEST(Checkpoint, CompleteWaitAndCompleteTwice) {
  Checkpoint cp;
  std::vector<std::string> seen;
  cp.wait([&](const Status& s) { seen.push_back(s.ok() ? "ok" : s.error()); });
  EXPECT_TRUE(seen.empty());
  cp.complete(makeError("first"));
  cp.complete(Status::success());  // no-op
  cp.wait([&](const Status& s) { seen.push_back(s.ok() ? "ok" : s.error()); });
  EXPECT_EQ(seen, (std::vector<std::string>{"first", "first"}));
}

TEST(Backoff, GrowsWithJitterAndCaps) {
  using ms = std::chrono::milliseconds;
  Backoff b(ms(100), ms(10000), /*seed=*/42);
  EXPECT_EQ(b.next(), Backoff::Duration::zero());  // first attempt is immediate
  ms expected_max(100);
  for (int i = 0; i < 12; ++i) {
    auto d = std::chrono::duration_cast<ms>(b.next());
    EXPECT_GE(d, expected_max / 2 - ms(1)) << "attempt " << i;
    EXPECT_LE(d, expected_max) << "attempt " << i;
    expected_max = std::min(expected_max * 2, ms(10000));
  }
  // At the cap it stays within [5 s, 10 s].
  for (int i = 0; i < 100; ++i) {
    auto d = b.next();
    EXPECT_GE(d, ms(5000));
    EXPECT_LE(d, ms(10000));
  }
  b.reset();
  EXPECT_EQ(b.next(), Backoff::Duration::zero());
}

}  // namespace
}  // namespace wsa::agent
