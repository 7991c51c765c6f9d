#pragma once
// The environment and working directory of every command the agent starts, with the reference
// agent's precedence (later wins):
//   1. workspace identification (WSA=true, WSA_WORKSPACE_*),
//   2. the agent's own environment and the session's (only keys not yet set),
//   3. manifest environment_variables, with $VAR / ${VAR} expanded against the agent's
//      environment (unset expands to empty),
//   4. manifest secrets with an env_name (raw values),
//   5. agent-level variables (options),
//   6. PATH with the script bin directory first.
// The agent's token variables never reach children.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "wsa/agent/v1/manifest.pb.h"

namespace wsa::exec {

using EnvMap = std::map<std::string, std::string>;

struct UserInfo {
  std::string name;
  std::string home;
  std::string shell;
};
// Name and shell from the password database for our uid (falling back to $USER, $SHELL,
// /bin/sh); home from $HOME, else the password database.
UserInfo currentUser();

EnvMap environFromProcess();
// Expands $VAR and ${VAR}; "$$" is a literal "$". Unknown variables expand to "".
std::string expandVars(const std::string& text,
                       const std::function<std::optional<std::string>(const std::string&)>& lookup);
// The manifest directory as the agent reports it: "" stays "", "~" and "~/x" are under home,
// $VARS expand, relative paths are taken under home, and the result is normalised.
std::string expandDirectory(const std::string& dir, const std::string& home, const EnvMap& env);

struct CommandEnvInputs {
  EnvMap process_env;  // the agent's environment
  EnvMap session_env;  // e.g. SSH env requests (may be empty)
  const wsa::agent::v1::Manifest* manifest = nullptr;
  EnvMap agent_env;            // agent-level overrides
  std::string script_bin_dir;  // first on PATH
  UserInfo user;
};
EnvMap buildCommandEnv(const CommandEnvInputs& in);
std::vector<std::string> toEnvList(const EnvMap& env);

// The working directory for commands: the expanded manifest directory if it is a directory,
// else home.
std::string commandDirectory(const std::string& expanded_dir, const std::string& home);

// Argv for running a script the way the reference does: "<shell> -c <script>", or, when the
// script starts with a "#!" line, "<interpreter> [args] -c <script>".
std::vector<std::string> shellCommand(const std::string& shell, const std::string& script);

}  // namespace wsa::exec
