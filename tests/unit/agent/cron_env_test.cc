#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "agent/cron.h"
#include "agent/scripts.h"
#include "wsa/agent/env.h"

namespace wsa::agent {
namespace {

class UtcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    saved_ = tz != nullptr ? tz : "";
    had_ = tz != nullptr;
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
  void TearDown() override {
    if (had_) {
      ::setenv("TZ", saved_.c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  static SystemTime at(const char* rfc3339) { return *parseRfc3339(rfc3339); }
  static std::string next(const CronSchedule& c, const char* after) {
    auto n = c.next(at(after));
    return n ? formatRfc3339(*n) : "never";
  }
  std::string saved_;
  bool had_ = false;
};

using Cron = UtcTest;

TEST_F(Cron, SecondsFirstAndFiveFieldSpecs) {
  auto every30s = CronSchedule::parse("*/30 * * * * *");
  ASSERT_TRUE(every30s.ok()) << every30s.error();
  EXPECT_EQ(next(*every30s, "2026-11-30T10:00:00Z"), "2026-11-30T10:00:30.000000Z");
  EXPECT_EQ(next(*every30s, "2026-11-30T10:00:30Z"), "2026-11-30T10:01:00.000000Z");
  auto five = CronSchedule::parse("15 3 * * *");  // 03:15:00 daily
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(next(*five, "2026-11-30T10:00:00Z"), "2026-12-01T03:15:00.000000Z");
}

TEST_F(Cron, RangesListsStepsAndNames) {
  auto c = CronSchedule::parse("0 0 9-17/4 * JAN,jun MON-FRI");
  ASSERT_TRUE(c.ok()) << c.error();
  // 2026-12-01 is in December: next match is Friday 2027-01-01 09:00.
  EXPECT_EQ(next(*c, "2026-12-01T00:00:00Z"), "2027-01-01T09:00:00.000000Z");
  EXPECT_EQ(next(*c, "2027-01-01T09:00:00Z"), "2027-01-01T13:00:00.000000Z");
  EXPECT_EQ(next(*c, "2027-01-01T17:00:00Z"), "2027-01-04T09:00:00.000000Z");  // Monday
  auto sunday7 = CronSchedule::parse("0 0 0 * * 7");
  ASSERT_TRUE(sunday7.ok());
  EXPECT_EQ(next(*sunday7, "2026-11-30T00:00:00Z"), "2026-12-06T00:00:00.000000Z");
}

TEST_F(Cron, DayOfMonthOrDayOfWeekWhenBothRestricted) {
  auto c = CronSchedule::parse("0 0 0 13 * FRI");  // the 13th, or any Friday
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(next(*c, "2026-11-30T00:00:00Z"), "2026-12-04T00:00:00.000000Z");  // a Friday
  EXPECT_EQ(next(*c, "2026-12-12T00:00:00Z"), "2026-12-13T00:00:00.000000Z");  // the 13th
}

TEST_F(Cron, ImpossibleDateNeverFires) {
  auto c = CronSchedule::parse("0 0 0 30 2 *");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(next(*c, "2026-11-30T00:00:00Z"), "never");
}

TEST(CronParse, ErrorsSayWhatIsWrong) {
  for (auto [spec, want] : std::vector<std::pair<const char*, const char*>>{
           {"* * *", "want 6 fields"},
           {"60 * * * * *", "seconds: 60 is outside 0-59"},
           {"* * 25 * * *", "hours: 25"},
           {"* * * * FOO *", "month: \"FOO\" is not a number"},
           {"*/0 * * * * *", "bad step"},
           {"5-1 * * * * *", "backwards"}}) {
    auto c = CronSchedule::parse(spec);
    ASSERT_FALSE(c.ok()) << spec;
    EXPECT_NE(c.error().find(want), std::string::npos) << c.error();
  }
}

TEST(Env, ExpandDirectory) {
  EnvMap env{{"PROJ", "code"}, {"HOME", "/home/u"}};
  EXPECT_EQ(expandDirectory("", "/home/u", env), "");
  EXPECT_EQ(expandDirectory("~", "/home/u", env), "/home/u");
  EXPECT_EQ(expandDirectory("~/src/", "/home/u", env), "/home/u/src");
  EXPECT_EQ(expandDirectory("coder/coder", "/home/u", env), "/home/u/coder/coder");
  EXPECT_EQ(expandDirectory("$HOME", "/home/u", env), "/home/u");
  EXPECT_EQ(expandDirectory("/srv/${PROJ}/./x/..", "/home/u", env), "/srv/code");
  EXPECT_EQ(expandDirectory("/abs", "/home/u", env), "/abs");
}

TEST(Env, ExpandVars) {
  auto lookup = [](const std::string& k) -> std::optional<std::string> {
    if (k == "A") return std::string("1");
    return std::nullopt;
  };
  EXPECT_EQ(expandVars("$A-${A}-$B-$$-$", lookup), "1-1--$-$");
  EXPECT_EQ(expandVars("${unterminated", lookup), "${unterminated");
}

TEST(Env, PrecedenceOfCommandEnvironment) {
  v1::Manifest m;
  m.set_workspace_name("ws");
  m.set_agent_name("dev");
  (*m.mutable_environment_variables())["FROM_MANIFEST"] = "x-$AGENT_VAR-$UNSET";
  (*m.mutable_environment_variables())["OVERRIDDEN"] = "manifest";
  (*m.mutable_environment_variables())["WSA_WORKSPACE_NAME"] = "manifest wins over predefined";
  auto* sec = m.add_secrets();
  sec->set_env_name("OVERRIDDEN");
  sec->set_value("secret");
  CommandEnvInputs in;
  in.process_env = {{"AGENT_VAR", "av"},
                    {"PATH", "/usr/bin"},
                    {"SESSION_ONLY", "agent"},
                    {"WSA", "agent process cannot override"}};
  in.session_env = {{"SESSION_ONLY", "session"}, {"NEW_FROM_SESSION", "s"}};
  in.manifest = &m;
  in.agent_env = {{"AGENT_LEVEL", "a"}, {"OVERRIDDEN", "agent-level"}};
  in.script_bin_dir = "/data/bin";
  in.user = {"u", "/home/u", "/bin/bash"};
  EnvMap env = buildCommandEnv(in);
  EXPECT_EQ(env["WSA"], "true");
  EXPECT_EQ(env["FROM_MANIFEST"], "x-av-");
  EXPECT_EQ(env["OVERRIDDEN"], "agent-level");  // agent level > secrets > manifest
  EXPECT_EQ(env["SESSION_ONLY"], "agent");      // the agent's process value is kept
  EXPECT_EQ(env["NEW_FROM_SESSION"], "s");
  EXPECT_EQ(env["WSA_WORKSPACE_NAME"], "manifest wins over predefined");
  EXPECT_EQ(env["PATH"], "/data/bin:/usr/bin");
  EXPECT_EQ(env["USER"], "u");
  EXPECT_EQ(env["SHELL"], "/bin/bash");
}

TEST(Env, TokenNeverReachesChildren) {
  CommandEnvInputs in;
  in.process_env = {{"WSA_AGENT_TOKEN", "secret"}, {"WSA_AGENT_TOKEN_FILE", "/t"}};
  in.user = {"u", "/home/u", "/bin/sh"};
  EnvMap env = buildCommandEnv(in);
  EXPECT_EQ(env.count("WSA_AGENT_TOKEN"), 0u);
  EXPECT_EQ(env.count("WSA_AGENT_TOKEN_FILE"), 0u);
}

TEST(Env, ShellCommandHonoursShebang) {
  EXPECT_EQ(shellCommand("/bin/bash", "echo hi"),
            (std::vector<std::string>{"/bin/bash", "-c", "echo hi"}));
  EXPECT_EQ(shellCommand("/bin/bash", "#!/usr/bin/env python3\nprint(1)"),
            (std::vector<std::string>{"/usr/bin/env", "python3", "-c",
                                      "#!/usr/bin/env python3\nprint(1)"}));
}

TEST(LineSplitterTest, SplitsStripsCrAndBoundsLines) {
  LineSplitter s(8);
  std::vector<std::string> lines;
  auto emit = [&](std::string l) { lines.push_back(std::move(l)); };
  s.feed("a\r\nb", emit);
  s.feed("c\nlonglonglong", emit);
  s.finish(emit);
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "bc", "longlong", "long"}));
}

}  // namespace
}  // namespace wsa::agent
