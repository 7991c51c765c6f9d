// Script runner and metadata collector with real child processes (sh), a real event loop for
// their I/O, and the manual clock for every timeout and schedule.

#include "agent/scripts.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <asio/io_context.hpp>
#include <filesystem>

#include "agent/metadata.h"
#include "support/util.h"
#include "unit/agent/fake_api.h"

namespace wsa::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ScriptsTest : public ::testing::Test {
 protected:
  ScriptsTest()
      : logs(clock, "inst"),
        timings("timings", 100,
                [](AgentApi& api, const v1::ScriptCompletedRequest& r,
                   std::function<void(const RpcStatus&)> done) {
                  api.scriptCompleted(
                      r, [done](const RpcStatus& s, v1::ScriptCompletedResponse) { done(s); });
                }) {}

  exec::Command command(const std::string& script, const exec::EnvMap& extra) {
    exec::EnvMap env = exec::environFromProcess();
    for (const auto& [k, v] : extra) env[k] = v;
    exec::Command c;
    c.argv = exec::shellCommand("/bin/sh", script);
    c.env = exec::toEnvList(env);
    return c;
  }
  std::unique_ptr<ScriptRunner> runner(const std::vector<v1::Script>& scripts) {
    ScriptRunnerOptions o;
    o.log_dir = dir.file("logs");
    o.data_dir = dir.file("data");
    o.wait_delay = seconds(10);
    o.kill_delay = seconds(10);
    auto r = std::make_unique<ScriptRunner>(
        io, clock, logs, timings, metrics, o,
        [this](const std::string& s, const exec::EnvMap& e) { return command(s, e); });
    EXPECT_TRUE(r->init(scripts).ok());
    return r;
  }
  static v1::Script script(const std::string& name, const std::string& body, bool start = true,
                           uint32_t timeout = 0) {
    v1::Script s;
    s.set_id("id-" + name);
    s.set_log_source_id("src-" + name);
    s.set_display_name(name);
    s.set_script(body);
    s.set_run_on_start(start);
    s.set_timeout_seconds(timeout);
    return s;
  }
  // Runs the loop until `done` (bounded in real time: child processes take real time).
  bool runUntil(const std::function<bool()>& done, milliseconds limit = milliseconds(20000)) {
    auto deadline = std::chrono::steady_clock::now() + wsa::test::scaled(limit);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io.restart();
      io.run_one_for(milliseconds(20));
    }
    return true;
  }
  std::vector<std::pair<v1::LogLevel, std::string>> lines() {
    // Drain the sender through a fake API to see what was queued.
    std::vector<std::pair<v1::LogLevel, std::string>> out;
    test::FakeApi api;
    auto r = logs.makeRoutine(api);
    r->start([](Status) {});
    logs.flushAll();
    clock.runDue();
    while (!api.calls.empty()) {
      auto req = api.request<v1::BatchCreateLogsRequest>("BatchCreateLogs");
      for (const auto& l : req.logs()) out.emplace_back(l.level(), l.output());
      api.answer("BatchCreateLogs");
    }
    r->stop();
    return out;
  }
  v1::Timing lastTiming() {
    v1::Timing t;
    test::FakeApi api;
    auto r = timings.makeRoutine(api);
    r->start([](Status) {});
    while (!api.calls.empty()) {
      t = api.request<v1::ScriptCompletedRequest>("ScriptCompleted").timing();  // last one wins
      api.answer("ScriptCompleted");
    }
    r->stop();
    return t;
  }

  wsa::test::TempDir dir;
  asio::io_context io;
  ManualClock clock;
  AgentMetrics metrics;
  LogSender logs;
  ReportQueue<v1::ScriptCompletedRequest> timings;
};

TEST_F(ScriptsTest, OutputGoesToLogsAndFileWithLevelsAndTiming) {
  auto r = runner({script("hello", "echo out1; echo err1 >&2; printf 'no newline'; exit 3")});
  std::optional<ScriptRunner::StageResult> res;
  r->runStage(v1::Timing::STAGE_START, [&](ScriptRunner::StageResult s) { res = s; });
  ASSERT_TRUE(runUntil([&] { return res.has_value(); }));
  EXPECT_TRUE(res->failed);
  EXPECT_FALSE(res->timed_out);
  auto l = lines();
  ASSERT_EQ(l.size(), 3u);
  std::multiset<std::string> got;
  for (auto& [lvl, text] : l) got.insert((lvl == v1::LOG_LEVEL_ERROR ? "E:" : "I:") + text);
  EXPECT_EQ(got, (std::multiset<std::string>{"I:out1", "E:err1", "I:no newline"}));
  std::string file = wsa::test::readText(dir.file("logs/wsa-script-src-hello.log"));
  EXPECT_NE(file.find("out1\n"), std::string::npos);
  EXPECT_NE(file.find("err1\n"), std::string::npos);
  auto t = lastTiming();
  EXPECT_EQ(t.script_id(), "id-hello");
  EXPECT_EQ(t.exit_code(), 3);
  EXPECT_EQ(t.status(), v1::Timing::STATUS_EXIT_FAILURE);
  EXPECT_EQ(t.stage(), v1::Timing::STAGE_START);
}

TEST_F(ScriptsTest, DataAndBinDirectoriesInEnvironment) {
  auto r = runner({script("env", "echo \"$WSA_SCRIPT_DATA_DIR|$WSA_SCRIPT_BIN_DIR\"")});
  std::optional<ScriptRunner::StageResult> res;
  r->runStage(v1::Timing::STAGE_START, [&](ScriptRunner::StageResult s) { res = s; });
  ASSERT_TRUE(runUntil([&] { return res.has_value(); }));
  EXPECT_FALSE(res->failed);
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].second, dir.file("data") + "/src-env|" + dir.file("data") + "/bin");
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("data/src-env")));
}

TEST_F(ScriptsTest, TimeoutSignalsTheGroupAndReportsTimedOut) {
  auto r = runner({script("slow",
                          "trap 'echo got hup; exit 1' HUP; echo started; "
                          "while true; do sleep 0.05; done",
                          true, 2)});
  std::optional<ScriptRunner::StageResult> res;
  r->runStage(v1::Timing::STAGE_START, [&](ScriptRunner::StageResult s) { res = s; });
  // Wait for the script to be running (its first line), then let the timeout pass.
  ASSERT_TRUE(runUntil([&] { return logs.stats().queued_lines >= 1; }));
  EXPECT_FALSE(res.has_value());
  clock.advance(seconds(2));
  ASSERT_TRUE(runUntil([&] { return res.has_value(); }));
  EXPECT_TRUE(res->timed_out);
  auto t = lastTiming();
  EXPECT_EQ(t.status(), v1::Timing::STATUS_TIMED_OUT);
  EXPECT_EQ(t.exit_code(), 255);
  // The trap ran: the group got SIGHUP (the shell may also report the killed sleep).
  bool got_hup = false;
  for (const auto& [lvl, text] : lines()) got_hup = got_hup || text == "got hup";
  EXPECT_TRUE(got_hup);
}

TEST_F(ScriptsTest, TimeoutEscalatesToKillWhenHupIsIgnored) {
  auto r = runner(
      {script("stubborn", "trap '' HUP; echo started; while true; do sleep 0.05; done", true, 1)});
  std::optional<ScriptRunner::StageResult> res;
  r->runStage(v1::Timing::STAGE_START, [&](ScriptRunner::StageResult s) { res = s; });
  ASSERT_TRUE(runUntil([&] { return logs.stats().queued_lines >= 1; }));
  clock.advance(seconds(1));  // SIGHUP: ignored
  ASSERT_FALSE(runUntil([&] { return res.has_value(); }, milliseconds(300)));
  clock.advance(seconds(10));  // kill delay: SIGKILL
  ASSERT_TRUE(runUntil([&] { return res.has_value(); }));
  EXPECT_TRUE(res->timed_out);
}

TEST_F(ScriptsTest, BackgroundChildHoldingPipesDoesNotHangTheRunner) {
  auto r = runner({script("bg", "sleep 59.917 & echo done")});
  std::optional<ScriptRunner::StageResult> res;
  r->runStage(v1::Timing::STAGE_START, [&](ScriptRunner::StageResult s) { res = s; });
  // The script itself exits at once; its child keeps stdout open.
  ASSERT_TRUE(
      runUntil([&] { return clock.pendingTimers() > 0 && logs.stats().queued_lines >= 1; }));
  EXPECT_FALSE(res.has_value());
  clock.advance(seconds(10));  // the wait delay
  ASSERT_TRUE(runUntil([&] { return res.has_value(); }));
  EXPECT_TRUE(res->failed);
  EXPECT_EQ(lastTiming().status(), v1::Timing::STATUS_PIPES_LEFT_OPEN);
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].second, "done");
  EXPECT_NE(l[1].second.find("WARNING"), std::string::npos);
  r->killAll();
  // The background child outlives its script (as with OpenSSH); end it here.
  (void)!::system("pkill -f '^sleep 59.917$' >/dev/null 2>&1");
}

TEST_F(ScriptsTest, StartAndStopStagesSelectTheirScripts) {
  auto stop = script("stop", "echo stopping", false);
  stop.set_run_on_stop(true);
  auto r = runner({script("start", "echo starting"), stop});
  std::optional<ScriptRunner::StageResult> res;
  r->runStage(v1::Timing::STAGE_STOP, [&](ScriptRunner::StageResult s) { res = s; });
  ASSERT_TRUE(runUntil([&] { return res.has_value(); }));
  EXPECT_EQ(res->ran, 1u);
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].second, "stopping");
}

TEST_F(ScriptsTest, CronRunsOnScheduleAndNeverOverlaps) {
  auto c = script("tick", "echo tick; sleep 30", false);
  c.set_cron("*/10 * * * * *");
  auto r = runner({c});
  r->startCron();
  auto next = clock.nextDeadline();
  ASSERT_TRUE(next.has_value());
  EXPECT_LE(*next, seconds(10));
  clock.advance(*next);
  ASSERT_TRUE(runUntil([&] { return logs.stats().queued_lines == 1; }));
  EXPECT_EQ(r->running(), 1u);
  clock.advance(seconds(10));  // still running: this tick is skipped
  EXPECT_EQ(r->running(), 1u);
  r->stopCron();
  r->killAll();
  ASSERT_TRUE(runUntil([&] { return r->running() == 0; }));
  EXPECT_EQ(lastTiming().stage(), v1::Timing::STAGE_CRON);
}

class MetadataTest : public ScriptsTest {
 protected:
  MetadataTest()
      : collector(io, clock, metrics, MetadataOptions{seconds(1), 10 * 1024},
                  [this](const std::string& s) { return command(s, {}); }) {}
  static v1::MetadataDescription desc(const std::string& key, const std::string& script,
                                      uint32_t interval, uint32_t timeout = 0) {
    v1::MetadataDescription d;
    d.set_key(key);
    d.set_script(script);
    d.set_interval_seconds(interval);
    d.set_timeout_seconds(timeout);
    return d;
  }
  // The reported batches.
  std::vector<v1::BatchUpdateMetadataRequest> reports;
  void answerReports() {
    while (api.pending("BatchUpdateMetadata") > 0) {
      reports.push_back(api.request<v1::BatchUpdateMetadataRequest>("BatchUpdateMetadata"));
      api.answer("BatchUpdateMetadata");
    }
  }
  std::map<std::string, int> collections() {
    std::map<std::string, int> n;
    for (const auto& r : reports) {
      for (const auto& m : r.metadata()) n[m.key()]++;
    }
    return n;
  }
  test::FakeApi api;
  MetadataCollector collector;
};

TEST_F(MetadataTest, OnceRepeatedTimeoutAndTruncated) {
  collector.setDescriptions({desc("once", "echo one", 0), desc("every2", "echo again", 2),
                             desc("slow", "sleep 30", 0, 1),
                             desc("big", "head -c 20000 /dev/zero | tr '\\0' x", 0),
                             desc("fails", "echo partial; exit 4", 0)});
  auto r = collector.makeRoutine(api);
  r->start([](Status) {});
  // Tick 0 starts all five; wait for the four quick ones.
  ASSERT_TRUE(runUntil([&] { return collector.inFlight() == 1; }));
  clock.advance(seconds(1));  // tick 1: report; "slow" times out (its timeout is 1 s)
  ASSERT_TRUE(runUntil([&] { return collector.inFlight() == 0; }));
  answerReports();
  auto latest = collector.latest();
  EXPECT_EQ(latest["once"].value(), "one\n");
  EXPECT_EQ(latest["once"].error(), "");
  EXPECT_EQ(latest["big"].value().size(), 10u * 1024);
  EXPECT_EQ(latest["big"].error(), "output truncated from 20000 to 10240 bytes");
  EXPECT_EQ(latest["fails"].value(), "partial\n");
  EXPECT_EQ(latest["fails"].error(), "run cmd: exit status 4");
  EXPECT_EQ(latest["slow"].error(), "run cmd: timed out after 1s");
  // Over the next 6 seconds, only "every2" runs again (at 2, 4, 6 s).
  for (int i = 0; i < 6; ++i) {
    clock.advance(seconds(1));
    ASSERT_TRUE(runUntil([&] { return collector.inFlight() == 0; }));
    answerReports();
  }
  clock.advance(seconds(1));
  answerReports();
  auto n = collections();
  EXPECT_EQ(n["once"], 1);
  EXPECT_EQ(n["every2"], 4);  // t=0, 2, 4, 6
  EXPECT_EQ(n["big"], 1);
  r->stop();
}

TEST_F(MetadataTest, OneCollectionPerKeyInFlight) {
  collector.setDescriptions({desc("slow", "sleep 30", 1, 5)});
  auto r = collector.makeRoutine(api);
  r->start([](Status) {});
  ASSERT_EQ(collector.inFlight(), 1u);
  for (int i = 0; i < 3; ++i) clock.advance(seconds(1));  // due again, but still running
  EXPECT_EQ(collector.inFlight(), 1u);
  clock.advance(seconds(2));  // the 5 s timeout
  ASSERT_TRUE(runUntil([&] { return collector.inFlight() == 0; }));
  r->stop();
}

}  // namespace
}  // namespace wsa::agent
