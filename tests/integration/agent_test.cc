// The real agent against the real controld, asserted through controld's admin API.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "support/agent_harness.h"
#include "support/controld_harness.h"
#include "support/http_client.h"
#include "wsa/http/server.h"

namespace wsa::test {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

json configWith(json manifest) {
  json c = basicControldConfig();
  c["stats_report_interval_seconds"] = 1;
  c["agents"][0]["manifest"] = std::move(manifest);
  return c;
}

std::vector<std::string> states(const json& view) {
  std::vector<std::string> out;
  for (const auto& l : view["lifecycle"]) out.push_back(l["state"]);
  return out;
}

// Waits until the agent's reported lifecycle equals `want`; returns the last seen list.
std::vector<std::string> waitStates(ControldHarness& cd, const std::vector<std::string>& want,
                                    milliseconds timeout = milliseconds(20000)) {
  std::vector<std::string> seen;
  waitUntil(
      [&] {
        seen = states(cd.agentView());
        return seen == want;
      },
      timeout, milliseconds(50));
  return seen;
}

std::vector<std::string> outputs(const json& view) {
  std::vector<std::string> out;
  for (const auto& l : view["logs"]) out.push_back(l["output"]);
  return out;
}

json script(const std::string& name, const std::string& body, const std::string& when,
            int timeout = 0) {
  json s = {{"display_name", name}, {"script", body}, {when, true}};
  if (timeout > 0) s["timeout_seconds"] = timeout;
  return s;
}

struct LifecycleCase {
  std::string name;
  json scripts;
  std::vector<std::string> after_start;
  std::vector<std::string> after_stop;
};

void PrintTo(const LifecycleCase& c, std::ostream* os) {
  *os << c.name;
}

class AgentLifecycle : public ::testing::TestWithParam<LifecycleCase> {};

TEST_P(AgentLifecycle, ReportsEveryStateOnceInOrder) {
  const auto& p = GetParam();
  ControldHarness cd(configWith({{"scripts", p.scripts}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  EXPECT_EQ(waitStates(cd, p.after_start), p.after_start) << agent.log();
  // The event stream (which marks the agent connected) and the lifecycle reports run side by side.
  EXPECT_TRUE(waitUntil([&] { return cd.agentView()["connected"].get<bool>(); }, seconds(10)));
  EXPECT_EQ(agent.stop(), 0) << agent.log();
  EXPECT_EQ(waitStates(cd, p.after_stop, milliseconds(5000)), p.after_stop) << agent.log();
  EXPECT_TRUE(waitUntil([&] { return !cd.agentView()["connected"].get<bool>(); }, seconds(10)));
}

INSTANTIATE_TEST_SUITE_P(
    All, AgentLifecycle,
    ::testing::Values(LifecycleCase{"Ready",
                                    json::array({script("s", "echo ok", "run_on_start")}),
                                    {"starting", "ready"},
                                    {"starting", "ready", "shutting_down", "off"}},
                      LifecycleCase{"StartError",
                                    json::array({script("s", "exit 3", "run_on_start")}),
                                    {"starting", "start_error"},
                                    {"starting", "start_error", "shutting_down", "off"}},
                      LifecycleCase{"StartTimeout",
                                    json::array({script("s", "sleep 60", "run_on_start", 1)}),
                                    {"starting", "start_timeout"},
                                    {"starting", "start_timeout", "shutting_down", "off"}},
                      LifecycleCase{"ShutdownError",
                                    json::array({script("s", "echo up", "run_on_start"),
                                                 script("t", "exit 1", "run_on_stop")}),
                                    {"starting", "ready"},
                                    {"starting", "ready", "shutting_down", "shutdown_error"}},
                      LifecycleCase{"ShutdownTimeout",
                                    json::array({script("s", "echo up", "run_on_start"),
                                                 script("t", "sleep 60", "run_on_stop", 1)}),
                                    {"starting", "ready"},
                                    {"starting", "ready", "shutting_down", "shutdown_timeout"}}),
    [](const ::testing::TestParamInfo<LifecycleCase>& i) { return i.param.name; });

TEST(Agent, DeliversThreeThousandStopScriptLinesInOrder) {
  ControldHarness cd(configWith(
      {{"scripts", json::array({script("start", "echo started", "run_on_start"),
                                script("stop", "for i in $(seq 1 3000); do echo \"line $i\"; done",
                                       "run_on_stop")})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}));
  EXPECT_EQ(agent.stop(), 0) << agent.log();
  // Everything was delivered before the agent exited.
  json view = cd.agentView();
  std::vector<std::string> stop_lines;
  for (const auto& l : view["logs"]) {
    if (l["source"] == "stop") stop_lines.push_back(l["output"]);
  }
  ASSERT_EQ(stop_lines.size(), 3000u);
  for (size_t i = 0; i < stop_lines.size(); ++i) {
    ASSERT_EQ(stop_lines[i], "line " + std::to_string(i + 1));
  }
  EXPECT_EQ(states(view).back(), "off");
}

TEST(Agent, CollectsMetadataOnceRepeatedTimedOutAndTruncated) {
  ControldHarness cd(configWith(
      {{"metadata",
        json::array({{{"key", "once"}, {"script", "echo once-$RANDOM"}, {"interval_seconds", 0}},
                     {{"key", "counter"}, {"script", "date +%s%N"}, {"interval_seconds", 1}},
                     {{"key", "slow"}, {"script", "sleep 30"}, {"timeout_seconds", 1}},
                     {{"key", "big"}, {"script", "head -c 20000 /dev/zero | tr '\\0' y"}},
                     {{"key", "fails"}, {"script", "echo nope; exit 2"}}})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  json md;
  ASSERT_TRUE(waitUntil(
      [&] {
        md = cd.agentView()["metadata"];
        return md.size() == 5;
      },
      seconds(20)))
      << md.dump() << agent.log();
  std::string once = md["once"]["value"];
  EXPECT_EQ(once.rfind("once-", 0), 0u);
  EXPECT_EQ(md["slow"]["error"], "run cmd: timed out after 1s");
  EXPECT_EQ(md["big"]["value"].get<std::string>().size(), 10240u);
  EXPECT_EQ(md["big"]["error"], "output truncated from 20000 to 10240 bytes");
  EXPECT_EQ(md["fails"]["value"], "nope\n");
  EXPECT_EQ(md["fails"]["error"], "run cmd: exit status 2");
  // "counter" changes on every collection; "once" never does.
  std::string first = md["counter"]["value"];
  ASSERT_TRUE(waitUntil([&] { return cd.agentView()["metadata"]["counter"]["value"] != first; },
                        seconds(10)));
  EXPECT_EQ(cd.agentView()["metadata"]["once"]["value"], once);
}

TEST(Agent, ReportsExpandedDirectory) {
  struct Case {
    std::string dir;
    std::string want;  // with HOME substituted
  };
  std::vector<Case> cases = {{"", ""},
                             {"~", "HOME"},
                             {"src/project", "HOME/src/project"},
                             {"$HOME", "HOME"},
                             {"~/a/../b", "HOME/b"}};
  json c = basicControldConfig();
  json agents = json::array();
  for (size_t i = 0; i < cases.size(); ++i) {
    agents.push_back({{"name", "a" + std::to_string(i)},
                      {"token", randomHex()},
                      {"manifest", {{"directory", cases[i].dir}}}});
  }
  c["agents"] = agents;
  ControldHarness cd(c);
  cd.start();
  std::vector<std::unique_ptr<AgentHarness>> running;
  for (size_t i = 0; i < cases.size(); ++i) {
    running.push_back(std::make_unique<AgentHarness>(cd.controlUrl(), cd.agentToken(i)));
    running.back()->start();
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string want = cases[i].want;
    if (want.rfind("HOME", 0) == 0) want = running[i]->home() + want.substr(4);
    json view;
    ASSERT_TRUE(waitUntil(
        [&] {
          view = cd.agentView("a" + std::to_string(i));
          return !view["startup"].is_null();
        },
        seconds(20)));
    EXPECT_EQ(view["startup"]["expanded_directory"], want)
        << "directory \"" << cases[i].dir << "\"";
  }
}

TEST(Agent, SurvivesControlServerRestartWithoutLostOrDuplicatedLogs) {
  // The start script prints 400 numbered lines over a few seconds; controld is killed (SIGKILL)
  // in the middle and restarted on the same (unix socket) address with the same database.
  ControldHarness::Options co;
  co.grpc_on_unix_socket = true;
  ControldHarness cd(
      configWith({{"scripts", json::array({script("count",
                                                  "for i in $(seq 1 400); do echo \"n $i\"; "
                                                  "sleep 0.01; done",
                                                  "run_on_start")})}}),
      co);
  cd.start();
  AgentHarness::Options ao;
  ao.extra_args = {"--backoff-cap", "500ms"};
  AgentHarness agent(cd.controlUrl(), cd.agentToken(), ao);
  agent.start();
  ASSERT_TRUE(waitUntil([&] { return cd.agentView()["logs"].size() >= 40; }, seconds(20)));
  cd.kill();
  cd.start();
  auto final_states = waitStates(cd, {"starting", "ready"}, milliseconds(30000));
  EXPECT_EQ(final_states, (std::vector<std::string>{"starting", "ready"})) << agent.log();
  std::vector<std::string> got;
  ASSERT_TRUE(waitUntil(
      [&] {
        got = outputs(cd.agentView());
        return got.size() >= 400;
      },
      seconds(30)))
      << got.size() << " lines";
  ASSERT_EQ(got.size(), 400u);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], "n " + std::to_string(i + 1));
  EXPECT_NE(agent.log().find("connection to the control server failed"), std::string::npos);
  EXPECT_EQ(agent.stop(), 0);
}

TEST(Agent, AppHealthFollowsTheApp) {
  // The "app" is an HTTP server in this process.
  asio::io_context io;
  http::Router router;
  std::atomic<int> status{200};
  router.addSync("GET", "/healthz",
                 [&](http::Request&) { return http::Response::text(status, "x"); });
  http::Server app(io, std::move(router));
  auto addr = app.listen("127.0.0.1:0");
  ASSERT_TRUE(addr.ok());
  std::thread t([&] { io.run(); });
  ControldHarness cd(configWith({{"apps", json::array({{{"slug", "web"},
                                                        {"healthcheck",
                                                         {{"url", "http://" + *addr + "/healthz"},
                                                          {"interval_seconds", 1},
                                                          {"threshold", 2}}}}})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  auto health = [&] {
    auto h = cd.agentView()["app_health"];
    return h.empty() ? std::string("none") : h.begin().value().get<std::string>();
  };
  EXPECT_TRUE(waitUntil([&] { return health() == "healthy"; }, seconds(15))) << health();
  status = 503;  // 5xx is a failure: unhealthy after threshold (2) + 1 consecutive failures
  auto failing_since = std::chrono::steady_clock::now();
  EXPECT_TRUE(waitUntil([&] { return health() == "unhealthy"; }, seconds(15))) << health();
  EXPECT_GE(std::chrono::steady_clock::now() - failing_since, milliseconds(1500));
  status = 404;  // any status below 500 is healthy
  EXPECT_TRUE(waitUntil([&] { return health() == "healthy"; }, seconds(15))) << health();
  asio::post(io, [&] { app.stop(); });
  io.stop();
  t.join();
  EXPECT_TRUE(waitUntil([&] { return health() == "unhealthy"; }, seconds(15))) << health();
}

TEST(Agent, PicksUpBannerChangesAtOnce) {
  ControldHarness cd(configWith(json::object()));
  cd.start();
  // A long refresh interval: only the server's event can explain a quick update.
  AgentHarness::Options ao;
  ao.extra_args = {"--banner-refresh-interval", "1h"};
  AgentHarness agent(cd.controlUrl(), cd.agentToken(), ao);
  agent.start();
  ASSERT_TRUE(waitUntil([&] { return cd.agentView()["connected"].get<bool>(); }, seconds(15)));
  auto put = httpRequest("PUT", "http://" + cd.httpAddress() + "/api/v1/banner",
                         R"({"enabled": true, "message": "Maintenance tonight"})",
                         {"Authorization: Bearer " + cd.adminToken()});
  ASSERT_EQ(put.status, 200);
  EXPECT_TRUE(waitUntil(
      [&] {
        auto b = agent.debugState()["banners"];
        return !b.empty() && b[0]["message"] == "Maintenance tonight";
      },
      seconds(10)))
      << agent.debugState().dump();
}

TEST(Agent, BadTokenRetriesWithBackoffAndNeverLogsTheToken) {
  ControldHarness cd(configWith(json::object()));
  cd.start();
  std::string bad = "bad-token-" + randomHex();
  AgentHarness::Options ao;
  ao.extra_args = {"--backoff-cap", "1s", "--shutdown-flush-timeout", "1s"};
  AgentHarness agent(cd.controlUrl(), bad, ao);
  agent.start();
  auto failures = [&] {
    auto m = httpRequest("GET", "http://" + cd.httpAddress() + "/metrics").body;
    const std::string name = "\nwsa_controld_auth_failures_total ";
    auto pos = m.find(name);
    return pos == std::string::npos ? 0 : std::stoi(m.substr(pos + name.size()));
  };
  // Attempts keep coming...
  ASSERT_TRUE(waitUntil([&] { return failures() >= 5; }, seconds(20))) << agent.log();
  // ...but spaced out: once at the 1 s cap, a 2 s window holds at most a few, never a storm.
  int before = failures();
  auto start = std::chrono::steady_clock::now();
  waitUntil([&] { return std::chrono::steady_clock::now() - start >= seconds(2); }, seconds(3),
            milliseconds(100));
  int during = failures() - before;
  EXPECT_GE(during, 1);
  EXPECT_LE(during, 5);  // one call per attempt, attempts 0.5-1 s apart
  EXPECT_EQ(agent.debugState()["lifecycle"].size(), 1u);  // never got a manifest
  std::string log = agent.log() + cd.log();
  EXPECT_NE(log.find("UNAUTHENTICATED"), std::string::npos);
  EXPECT_EQ(log.find(bad), std::string::npos) << "the token leaked into a log";
  // Stopping still works; the final state could not be delivered, which exit code 1 says.
  EXPECT_EQ(agent.stop(), 1);
}

TEST(Agent, MetricsPassPromtoolAndCountRoutines) {
  ControldHarness cd(
      configWith({{"scripts", json::array({script("s", "echo hi", "run_on_start")})},
                  {"metadata",
                   json::array({{{"key", "k"}, {"script", "echo v"}, {"interval_seconds", 1}}})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}));
  // The start script's log line and the first metadata collection are independent.
  ASSERT_TRUE(waitUntil(
      [&] {
        std::string m = agent.metrics();
        return m.find("wsa_agent_logs_sent_total 1") != std::string::npos &&
               m.find("wsa_agent_metadata_collections_total{result=\"ok\"}") != std::string::npos;
      },
      seconds(10)))
      << agent.metrics();
  std::string m = agent.metrics();
  for (const char* want : {"wsa_agent_connected 1", "wsa_agent_connect_attempts_total 1",
                           "wsa_agent_scripts_executed_total{stage=\"start\",success=\"true\"} 1",
                           "wsa_agent_metadata_collections_total{result=\"ok\"}",
                           "wsa_agent_logs_queued_bytes 0", "wsa_agent_lifecycle_state 5"}) {
    EXPECT_NE(m.find(want), std::string::npos) << want << "\n" << m;
  }
  writeText(agent.dir() + "/metrics.txt", m);
  auto r = run({"promtool", "check", "metrics"}, seconds(30), {}, m);
  EXPECT_EQ(r.code, 0) << r.output;
  // Stats carry the same metrics to the server.
  // (a report taken before the start script ended lacks the script counter; a later one has it)
  EXPECT_TRUE(waitUntil(
      [&] {
        json st = cd.agentView()["stats"];
        return !st.is_null() &&
               st["metrics"].dump().find("wsa_agent_scripts_executed_total") != std::string::npos;
      },
      seconds(10)))
      << cd.agentView()["stats"].dump();
}

TEST(Agent, TokenStaysOutOfProcessListAndChildren) {
  ControldHarness cd(
      configWith({{"scripts", json::array({script("env",
                                                  "env | grep -c WSA_AGENT_TOKEN || true; "
                                                  "cat /proc/$PPID/cmdline | tr '\\0' ' '",
                                                  "run_on_start")})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}));
  std::string cmdline = readText("/proc/" + std::to_string(agent.agentPid()) + "/cmdline");
  EXPECT_EQ(cmdline.find(cd.agentToken()), std::string::npos);
  std::string environ = readText("/proc/" + std::to_string(agent.agentPid()) + "/environ");
  EXPECT_EQ(environ.find(cd.agentToken()), std::string::npos);
  ASSERT_TRUE(waitUntil([&] { return outputs(cd.agentView()).size() >= 1; }, seconds(10)));
  auto out = outputs(cd.agentView());
  EXPECT_EQ(out[0], "0");  // no WSA_AGENT_TOKEN* in the script's environment
  EXPECT_EQ(agent.log().find(cd.agentToken()), std::string::npos);
}

TEST(Agent, AsPid1ReapsOrphansAndForwardsSignals) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a PID namespace (unshare)";
  // The start script leaves an orphan (not holding the script's output) that lives until the
  // test releases it: it is re-parented to PID 1, which must reap it when it exits.
  TempDir tmp;
  std::string release = tmp.file("release");
  ControldHarness cd(configWith(
      {{"scripts",
        json::array({script("orphan",
                            "(exec sh -c 'while [ ! -e " + release +
                                " ]; do sleep 0.05; done' >/dev/null 2>&1 &) ; echo spawned",
                            "run_on_start")})}}));
  cd.start();
  AgentHarness::Options ao;
  ao.wrapper = {"unshare", "--pid", "--fork", "--mount-proc", "--kill-child"};
  AgentHarness agent(cd.controlUrl(), cd.agentToken(), ao);
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}))
      << agent.log();
  EXPECT_NE(agent.log().find("running as PID 1"), std::string::npos) << agent.log();
  // From the outside: unshare's child is the reaper (PID 1 inside), whose child is the agent.
  // Zombies stay in their parent's children list until reaped.
  auto children = [](pid_t pid) {
    std::vector<pid_t> out;
    std::istringstream in(
        readText("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"));
    pid_t c;
    while (in >> c) out.push_back(c);
    return out;
  };
  auto reapers = children(agent.processPid());
  ASSERT_EQ(reapers.size(), 1u);
  pid_t reaper = reapers[0];
  // The agent and the orphan.
  ASSERT_TRUE(waitUntil([&] { return children(reaper).size() == 2; }, seconds(10)))
      << children(reaper).size();
  writeText(release, "");
  // The orphan exits and is reaped: only the agent is left.
  EXPECT_TRUE(waitUntil([&] { return children(reaper).size() == 1; }, seconds(10)))
      << children(reaper).size();
  // SIGTERM to the reaper reaches the agent: a graceful stop, and the agent's exit code.
  ::kill(reaper, SIGTERM);
  auto code = agent.wait(milliseconds(30000));
  ASSERT_TRUE(code.has_value()) << agent.log();
  EXPECT_EQ(*code, 0) << agent.log();
  EXPECT_EQ(states(cd.agentView()).back(), "off");
}

}  // namespace
}  // namespace wsa::test

namespace wsa::test {
namespace {

TEST(Agent, ProcessPriorityManagementLowersChildren) {
  ControldHarness cd(configWith(
      {{"scripts",
        json::array({script("prio", "cat /proc/self/oom_score_adj; nice", "run_on_start")})}}));
  cd.start();
  // The agent's own values are the defaults (0, 0): children get OOM score 998 and nice 5.
  AgentHarness::Options ao;
  ao.extra_args = {"--proc-prio-mgmt"};
  AgentHarness agent(cd.controlUrl(), cd.agentToken(), ao);
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}));
  ASSERT_TRUE(waitUntil([&] { return outputs(cd.agentView()).size() == 2; }, seconds(10)));
  EXPECT_EQ(outputs(cd.agentView()), (std::vector<std::string>{"998", "5"}));
  // The agent itself is untouched.
  EXPECT_EQ(readText("/proc/" + std::to_string(agent.agentPid()) + "/oom_score_adj"), "0\n");
}

TEST(Agent, DebugEndpointsRedactSecretsAndServeTheLog) {
  ControldHarness cd(configWith(
      {{"environment_variables", {{"API_URL", "https://internal.example"}}},
       {"secrets", json::array({{{"env_name", "DB_PASSWORD"}, {"value", "hunter2-secret"}}})},
       {"scripts",
        json::array({script("s", "echo \"secret length ${#DB_PASSWORD}\"", "run_on_start")})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}));
  ASSERT_TRUE(waitUntil([&] { return outputs(cd.agentView()).size() == 1; }, seconds(10)));
  EXPECT_EQ(outputs(cd.agentView())[0], "secret length 14");  // the script got the secret...
  auto [code, manifest] = agent.debugGet("/debug/manifest");
  EXPECT_EQ(code, 200);
  EXPECT_EQ(manifest.find("hunter2-secret"), std::string::npos);  // ...the debug view does not
  EXPECT_EQ(manifest.find("internal.example"), std::string::npos);
  EXPECT_NE(manifest.find("***REDACTED***"), std::string::npos);
  auto j = json::parse(manifest);
  EXPECT_EQ(j["agent_name"], "dev");
  auto [lcode, log] = agent.debugGet("/debug/logs");
  EXPECT_EQ(lcode, 200);
  EXPECT_NE(log.find("lifecycle: ready"), std::string::npos);
  EXPECT_EQ(log.find("hunter2-secret"), std::string::npos);
  // controld stores "ready" before it answers; the agent records the answer a moment later.
  std::string st;
  EXPECT_TRUE(waitUntil(
      [&] {
        auto [scode, body] = agent.debugGet("/debug/state");
        st = body;
        return scode == 200 &&
               json::parse(body, nullptr, false).value("lifecycle_reported", "") == "ready";
      },
      seconds(10)))
      << st;
  EXPECT_EQ(agent.debugGet("/debug/nope").first, 404);
}

}  // namespace
}  // namespace wsa::test

namespace wsa::test {
namespace {

TEST(Agent, ShutsDownGracefullyWhenTheServerAsks) {
  ControldHarness cd(configWith(
      {{"scripts", json::array({script("s", "echo up", "run_on_start"),
                                script("t", "echo stopping because asked", "run_on_stop")})}}));
  cd.start();
  AgentHarness agent(cd.controlUrl(), cd.agentToken());
  agent.start();
  ASSERT_EQ(waitStates(cd, {"starting", "ready"}), (std::vector<std::string>{"starting", "ready"}));
  // A shutdown request needs the agent's event stream (409 otherwise).
  ASSERT_TRUE(waitUntil([&] { return cd.agentView()["connected"].get<bool>(); }, seconds(10)));
  auto r = httpRequest("POST", "http://" + cd.httpAddress() + "/api/v1/agents/dev/shutdown",
                       R"({"reason": "workspace stopping"})",
                       {"Authorization: Bearer " + cd.adminToken()});
  ASSERT_EQ(r.status, 202) << r.body;
  auto code = agent.wait(milliseconds(20000));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
  json view = cd.agentView();
  EXPECT_EQ(states(view), (std::vector<std::string>{"starting", "ready", "shutting_down", "off"}));
  auto out = outputs(view);  // order is defined per source only
  EXPECT_NE(std::find(out.begin(), out.end(), "stopping because asked"), out.end());
  EXPECT_NE(agent.log().find("requested by the control server: workspace stopping"),
            std::string::npos);
}

}  // namespace
}  // namespace wsa::test
