// The command builder: scripts, SSH sessions and reconnecting-PTY shells get their argv,
// environment, directory and priority from one place, so the same context gives them the same
// environment; only a session's own variables differ, and only where a session gives them.

#include "wsa/exec/command.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

namespace wsa::exec {
namespace {

namespace v1 = wsa::agent::v1;

CommandContext makeContext() {
  auto m = std::make_shared<v1::Manifest>();
  m->set_workspace_name("ws");
  m->set_workspace_id("wid");
  m->set_owner_username("owner");
  m->set_agent_name("dev");
  m->set_agent_id("aid");
  (*m->mutable_environment_variables())["FROM_MANIFEST"] = "m-$FROM_PROCESS";
  (*m->mutable_environment_variables())["IN_PROCESS_AND_MANIFEST"] = "manifest";
  (*m->mutable_environment_variables())["IN_MANIFEST_AND_AGENT"] = "manifest";
  auto* secret = m->add_secrets();
  secret->set_env_name("SECRET_VAR");
  secret->set_value("s3cret");
  CommandContext c;
  c.process_env = {{"FROM_PROCESS", "p"},
                   {"IN_PROCESS_AND_MANIFEST", "process"},
                   {"IN_PROCESS_AND_SESSION", "process"},
                   {"PATH", "/usr/bin:/bin"}};
  c.manifest = m;
  c.agent_env = {{"FROM_AGENT", "a"}, {"IN_MANIFEST_AND_AGENT", "agent"}};
  c.script_bin_dir = "/data/bin";
  c.user = {"u", "/home/u", "/bin/bash"};
  c.expanded_dir = "/nonexistent/wsa-command-test";
  c.priority.oom_score_adj = 998;
  c.priority.nice = 7;
  return c;
}

TEST(ExecCommandTest, ScriptSshSessionAndPtyShellGetTheSameEnvironment) {
  CommandContext ctx = makeContext();
  // A script as the agent runs it, an SSH login shell with no env requests, a PTY shell.
  BuiltCommand script = buildCommand(ctx, Invocation::shellScript("echo hi"));
  BuiltCommand ssh = buildCommand(ctx, Invocation::loginShell(), EnvMap{});
  BuiltCommand pty = buildCommand(ctx, Invocation::loginShell());
  EXPECT_EQ(script.env, ssh.env);
  EXPECT_EQ(script.env, pty.env);
  EXPECT_EQ(script.cwd, ssh.cwd);
  EXPECT_EQ(script.cwd, pty.cwd);
  for (const BuiltCommand* c : {&script, &ssh, &pty}) {
    EXPECT_EQ(c->priority.oom_score_adj, 998);
    EXPECT_EQ(c->priority.nice, 7);
  }
  // And the one environment is the documented one.
  EnvMap want = {{"WSA", "true"},
                 {"WSA_WORKSPACE_NAME", "ws"},
                 {"WSA_WORKSPACE_ID", "wid"},
                 {"WSA_WORKSPACE_OWNER_NAME", "owner"},
                 {"WSA_WORKSPACE_AGENT_NAME", "dev"},
                 {"WSA_WORKSPACE_AGENT_ID", "aid"},
                 {"FROM_PROCESS", "p"},
                 {"IN_PROCESS_AND_SESSION", "process"},
                 {"FROM_MANIFEST", "m-p"},
                 {"IN_PROCESS_AND_MANIFEST", "manifest"},
                 {"IN_MANIFEST_AND_AGENT", "agent"},
                 {"SECRET_VAR", "s3cret"},
                 {"FROM_AGENT", "a"},
                 {"USER", "u"},
                 {"LOGNAME", "u"},
                 {"SHELL", "/bin/bash"},
                 {"HOME", "/home/u"},
                 {"PATH", "/data/bin:/usr/bin:/bin"}};
  EXPECT_EQ(script.env, want);
}

TEST(ExecCommandTest, SessionVariablesOnlyWhereASessionGivesThem) {
  CommandContext ctx = makeContext();
  EnvMap session = {{"LC_FROM_CLIENT", "c"},
                    {"IN_PROCESS_AND_SESSION", "session"},
                    {"IN_MANIFEST_AND_AGENT", "session"}};
  BuiltCommand ssh = buildCommand(ctx, Invocation::loginShell(), session);
  BuiltCommand pty = buildCommand(ctx, Invocation::loginShell());
  BuiltCommand script = buildCommand(ctx, Invocation::shellScript("true"));
  EXPECT_EQ(ssh.env["LC_FROM_CLIENT"], "c");
  // A session's variable never replaces one already set: the agent's process, the manifest
  // and the agent level all win over it.
  EXPECT_EQ(ssh.env["IN_PROCESS_AND_SESSION"], "process");
  EXPECT_EQ(ssh.env["IN_MANIFEST_AND_AGENT"], "agent");
  EXPECT_EQ(pty.env.count("LC_FROM_CLIENT"), 0u);
  EXPECT_EQ(script.env.count("LC_FROM_CLIENT"), 0u);
  ssh.env.erase("LC_FROM_CLIENT");
  EXPECT_EQ(ssh.env, pty.env);
}

TEST(ExecCommandTest, Precedence) {
  CommandContext ctx = makeContext();
  for (const Invocation& run : {Invocation::shellScript("x"), Invocation::loginShell(),
                                Invocation::program({"/usr/lib/openssh/sftp-server"})}) {
    BuiltCommand c = buildCommand(ctx, run);
    EXPECT_EQ(c.env["IN_PROCESS_AND_MANIFEST"], "manifest");  // manifest over process env
    EXPECT_EQ(c.env["IN_MANIFEST_AND_AGENT"], "agent");       // agent env over manifest
    EXPECT_EQ(c.env["FROM_MANIFEST"], "m-p");  // expanded against the agent's environment
    EXPECT_EQ(c.env["PATH"], "/data/bin:/usr/bin:/bin");  // the script bin directory first
  }
  // No bin directory yet (before the first manifest): PATH as the agent has it.
  ctx.script_bin_dir.clear();
  EXPECT_EQ(buildCommand(ctx, Invocation::loginShell()).env["PATH"], "/usr/bin:/bin");
  // No manifest yet: no workspace variables.
  ctx.manifest = nullptr;
  BuiltCommand early = buildCommand(ctx, Invocation::shellScript("x"));
  EXPECT_EQ(early.env.count("WSA_WORKSPACE_NAME"), 0u);
  EXPECT_EQ(early.env["IN_PROCESS_AND_MANIFEST"], "process");
}

TEST(ExecCommandTest, ExtraVariablesJoinTheAgentLevel) {
  CommandContext ctx = makeContext();
  BuiltCommand c =
      buildCommand(ctx, Invocation::shellScript("x"), {},
                   {{"WSA_SCRIPT_DATA_DIR", "/data/s1"}, {"FROM_AGENT", "script's own"}});
  EXPECT_EQ(c.env["WSA_SCRIPT_DATA_DIR"], "/data/s1");
  EXPECT_EQ(c.env["FROM_AGENT"], "script's own");
}

TEST(ExecCommandTest, ArgvForScriptsLoginShellsAndPrograms) {
  CommandContext ctx = makeContext();
  BuiltCommand script = buildCommand(ctx, Invocation::shellScript("echo hi"));
  EXPECT_EQ(script.argv, (std::vector<std::string>{"/bin/bash", "-c", "echo hi"}));
  EXPECT_EQ(script.argv0, "");
  BuiltCommand shebang = buildCommand(ctx, Invocation::shellScript("#!/usr/bin/env python3\n1"));
  EXPECT_EQ(shebang.argv, (std::vector<std::string>{"/usr/bin/env", "python3", "-c",
                                                    "#!/usr/bin/env python3\n1"}));
  // An empty script is still a script (the agent runs what the manifest says), not a shell.
  EXPECT_EQ(buildCommand(ctx, Invocation::shellScript("")).argv,
            (std::vector<std::string>{"/bin/bash", "-c", ""}));
  BuiltCommand login = buildCommand(ctx, Invocation::loginShell());
  EXPECT_EQ(login.argv, std::vector<std::string>{"/bin/bash"});
  EXPECT_EQ(login.argv0, "-bash");
  BuiltCommand sftp = buildCommand(ctx, Invocation::program({"/usr/lib/openssh/sftp-server"}));
  EXPECT_EQ(sftp.argv, std::vector<std::string>{"/usr/lib/openssh/sftp-server"});
  EXPECT_EQ(sftp.argv0, "");
  EXPECT_EQ(loginArgv0("/usr/bin/zsh"), "-zsh");
  EXPECT_EQ(loginArgv0("sh"), "-sh");
}

TEST(ExecCommandTest, WorkingDirectoryIsTheManifestDirectoryIfItExists) {
  CommandContext ctx = makeContext();
  EXPECT_EQ(buildCommand(ctx, Invocation::loginShell()).cwd, "/home/u");  // missing: home
  ctx.expanded_dir.clear();
  EXPECT_EQ(buildCommand(ctx, Invocation::loginShell()).cwd, "/home/u");
  std::string tmpl = (std::filesystem::temp_directory_path() / "wsa-command-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  ctx.expanded_dir = tmpl;
  EXPECT_EQ(buildCommand(ctx, Invocation::shellScript("x")).cwd, tmpl);
  EXPECT_EQ(buildCommand(ctx, Invocation::loginShell()).cwd, tmpl);
  ::rmdir(tmpl.c_str());
}

TEST(ExecCommandTest, ProcessCommandCarriesEverything) {
  CommandContext ctx = makeContext();
  BuiltCommand b = buildCommand(ctx, Invocation::shellScript("echo hi"));
  Command c = b.processCommand();
  EXPECT_EQ(c.argv, b.argv);
  EXPECT_EQ(c.env, toEnvList(b.env));
  EXPECT_EQ(c.cwd, b.cwd);
  EXPECT_EQ(c.priority.oom_score_adj, 998);
  EXPECT_EQ(c.priority.nice, 7);
  EXPECT_FALSE(c.merge_stderr);
}

}  // namespace
}  // namespace wsa::exec
