// The command environment and its pieces: directory and variable expansion, the precedence of
// the environment's sources, the token kept from children, scripts run through the shell.

#include "wsa/exec/environment.h"

#include <gtest/gtest.h>

namespace wsa::exec {
namespace {

namespace v1 = wsa::agent::v1;

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

}  // namespace
}  // namespace wsa::exec
