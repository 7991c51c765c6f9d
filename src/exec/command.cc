#include "wsa/exec/command.h"

namespace wsa::exec {

Invocation Invocation::shellScript(std::string script) {
  Invocation i;
  i.kind = Kind::kScript;
  i.script = std::move(script);
  return i;
}

Invocation Invocation::loginShell() {
  return Invocation{};
}

Invocation Invocation::program(std::vector<std::string> argv) {
  Invocation i;
  i.kind = Kind::kProgram;
  i.argv = std::move(argv);
  return i;
}

Command BuiltCommand::processCommand() const {
  Command c;
  c.argv = argv;
  c.env = envList();
  c.cwd = cwd;
  c.priority = priority;
  return c;
}

BuiltCommand buildCommand(const CommandContext& ctx, const Invocation& run,
                          const EnvMap& session_env, const EnvMap& extra_env) {
  CommandEnvInputs in;
  in.process_env = ctx.process_env;
  in.session_env = session_env;
  in.manifest = ctx.manifest.get();
  in.agent_env = ctx.agent_env;
  for (const auto& [k, v] : extra_env) in.agent_env[k] = v;
  in.script_bin_dir = ctx.script_bin_dir;
  in.user = ctx.user;
  BuiltCommand c;
  c.env = buildCommandEnv(in);
  c.cwd = commandDirectory(ctx.expanded_dir, ctx.user.home);
  c.priority = ctx.priority;
  switch (run.kind) {
    case Invocation::Kind::kScript:
      c.argv = shellCommand(ctx.user.shell, run.script);
      break;
    case Invocation::Kind::kLoginShell:
      c.argv = {ctx.user.shell};
      c.argv0 = loginArgv0(ctx.user.shell);
      break;
    case Invocation::Kind::kProgram:
      c.argv = run.argv;
      break;
  }
  return c;
}

std::string loginArgv0(const std::string& shell) {
  auto slash = shell.rfind('/');
  std::string out(1, '-');
  out.append(shell, slash == std::string::npos ? 0 : slash + 1);
  return out;
}

}  // namespace wsa::exec
