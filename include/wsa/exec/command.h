#pragma once
// The one place where a command's argv, environment, working directory and priority are put
// together, for the agent's scripts and metadata, SSH sessions and reconnecting-PTY shells
// alike. The environment follows the precedence documented in environment.h; each caller then
// adds only what it alone knows (SSH_CONNECTION, TERM, ...).

#include <memory>
#include <string>
#include <vector>

#include "wsa/agent/v1/manifest.pb.h"
#include "wsa/exec/environment.h"
#include "wsa/exec/process.h"
#include "wsa/exec/spawn.h"

namespace wsa::exec {

// Everything but the session that commands are built from, as the agent knows it at one moment.
// Immutable once published: session threads share one snapshot.
struct CommandContext {
  EnvMap process_env;  // the agent's environment, its token variables removed
  std::shared_ptr<const wsa::agent::v1::Manifest> manifest;  // null before the first one
  EnvMap agent_env;                                          // agent-level variables (options)
  std::string script_bin_dir;  // first on PATH; empty until the scripts are set up
  UserInfo user;
  std::string expanded_dir;  // the manifest directory, expanded (expandDirectory)
  ChildPriority priority;
};

// What a command runs.
struct Invocation {
  enum class Kind {
    kScript,      // "<shell> -c <script>", or the script's #! interpreter (shellCommand)
    kLoginShell,  // the user's shell as a login shell (argv[0] "-bash")
    kProgram,     // argv as given (an SSH subsystem's server)
  };
  Kind kind = Kind::kLoginShell;
  std::string script;             // kScript
  std::vector<std::string> argv;  // kProgram

  static Invocation shellScript(std::string script);
  static Invocation loginShell();
  static Invocation program(std::vector<std::string> argv);
};

// A command ready to start: spawnProcess takes it as a Command (processCommand()),
// term::spawnChild as a ChildSpec (term::childSpec).
struct BuiltCommand {
  std::vector<std::string> argv;  // argv[0]: the program, resolved through PATH of env
  std::string argv0;              // what the program sees as argv[0]; empty: argv[0]
  EnvMap env;                     // complete; a caller may still add its own variables
  std::string cwd;                // commandDirectory: the manifest directory, else home
  ChildPriority priority;

  std::vector<std::string> envList() const { return toEnvList(env); }
  // For spawnProcess, which has no argv0 (scripts never run as login shells).
  Command processCommand() const;
};

// `session_env` enters at step 2 of the precedence (only keys not yet set: SSH env requests);
// `extra_env` joins the agent-level variables at step 5, over them (a script's own variables).
BuiltCommand buildCommand(const CommandContext& ctx, const Invocation& run,
                          const EnvMap& session_env = {}, const EnvMap& extra_env = {});

// argv[0] for a login shell: "-" and the shell's base name ("/bin/bash" → "-bash").
std::string loginArgv0(const std::string& shell);

}  // namespace wsa::exec
