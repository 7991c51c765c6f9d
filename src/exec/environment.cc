#include "wsa/exec/environment.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "wsa/common/fs.h"
#include "wsa/common/strings.h"

extern char** environ;

namespace wsa::exec {

namespace {
// Variables of the agent's own configuration that must not reach children.
const char* const kPrivateVars[] = {"WSA_AGENT_TOKEN", "WSA_AGENT_TOKEN_FILE"};
}  // namespace

UserInfo currentUser() {
  UserInfo u;
  struct passwd pw {};
  struct passwd* res = nullptr;
  char buf[16384];
  if (getpwuid_r(::getuid(), &pw, buf, sizeof(buf), &res) == 0 && res != nullptr) {
    u.name = res->pw_name;
    u.home = res->pw_dir;
    u.shell = res->pw_shell;
  }
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v != nullptr ? v : "";
  };
  if (u.name.empty()) u.name = env("USER");
  // $HOME wins over the password database, as in every shell (and the reference agent).
  if (!env("HOME").empty()) u.home = env("HOME");
  if (u.home.empty()) u.home = homeDirectory();
  if (u.shell.empty() || ::access(u.shell.c_str(), X_OK) != 0) u.shell = env("SHELL");
  if (u.shell.empty() || ::access(u.shell.c_str(), X_OK) != 0) u.shell = "/bin/sh";
  return u;
}

EnvMap environFromProcess() {
  EnvMap m;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    m.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return m;
}

std::string expandVars(
    const std::string& s,
    const std::function<std::optional<std::string>(const std::string&)>& lookup) {
  std::string out;
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '$' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    if (s[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (s[i + 1] == '{') {
      size_t close = s.find('}', i + 2);
      if (close == std::string::npos) {
        out += s.substr(i);
        break;
      }
      out += lookup(s.substr(i + 2, close - i - 2)).value_or("");
      i = close;
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && is_name(s[j])) ++j;
    if (j == i + 1) {
      out += '$';
      continue;
    }
    out += lookup(s.substr(i + 1, j - i - 1)).value_or("");
    i = j - 1;
  }
  return out;
}

std::string expandDirectory(const std::string& dir, const std::string& home, const EnvMap& env) {
  if (dir.empty()) return "";
  std::string d = dir;
  if (d == "~") {
    d = home;
  } else if (d.rfind("~/", 0) == 0) {
    d = home + d.substr(1);
  }
  d = expandVars(d, [&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it != env.end()) return it->second;
    if (k == "HOME") return home;
    return std::nullopt;
  });
  if (d.empty()) return "";
  std::filesystem::path p(d);
  if (p.is_relative()) p = std::filesystem::path(home) / p;
  std::string out = p.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

EnvMap buildCommandEnv(const CommandEnvInputs& in) {
  EnvMap env;
  env["WSA"] = "true";
  if (in.manifest != nullptr) {
    env["WSA_WORKSPACE_NAME"] = in.manifest->workspace_name();
    env["WSA_WORKSPACE_ID"] = in.manifest->workspace_id();
    env["WSA_WORKSPACE_OWNER_NAME"] = in.manifest->owner_username();
    env["WSA_WORKSPACE_AGENT_NAME"] = in.manifest->agent_name();
    env["WSA_WORKSPACE_AGENT_ID"] = in.manifest->agent_id();
  }
  for (const auto& [k, v] : in.process_env) env.emplace(k, v);
  for (const auto& [k, v] : in.session_env) env.emplace(k, v);
  env.emplace("USER", in.user.name);
  env.emplace("LOGNAME", in.user.name);
  env.emplace("SHELL", in.user.shell);
  env.emplace("HOME", in.user.home);
  if (in.manifest != nullptr) {
    for (const auto& [k, v] : in.manifest->environment_variables()) {
      env[k] = expandVars(v, [&](const std::string& name) -> std::optional<std::string> {
        auto it = in.process_env.find(name);
        if (it == in.process_env.end()) return std::nullopt;
        return it->second;
      });
    }
    for (const auto& s : in.manifest->secrets()) {
      if (!s.env_name().empty()) env[s.env_name()] = s.value();
    }
  }
  for (const auto& [k, v] : in.agent_env) env[k] = v;
  for (const char* k : kPrivateVars) env.erase(k);
  if (!in.script_bin_dir.empty()) {
    auto it = env.find("PATH");
    std::string path = it != env.end() ? it->second : "/usr/local/bin:/usr/bin:/bin";
    env["PATH"] = in.script_bin_dir + ":" + path;
  }
  return env;
}

std::vector<std::string> toEnvList(const EnvMap& env) {
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::string commandDirectory(const std::string& expanded_dir, const std::string& home) {
  if (!expanded_dir.empty() && isDirectory(expanded_dir)) return expanded_dir;
  return home;
}

std::vector<std::string> shellCommand(const std::string& shell, const std::string& script) {
  std::string_view t = trim(script);
  if (t.rfind("#!", 0) == 0) {
    size_t nl = t.find('\n');
    std::string line(t.substr(2, nl == std::string_view::npos ? std::string_view::npos : nl - 2));
    std::vector<std::string> argv;
    for (auto& part : split(std::string(trim(line)), ' ')) {
      if (!part.empty()) argv.push_back(part);
    }
    if (!argv.empty()) {
      argv.push_back("-c");
      argv.push_back(script);
      return argv;
    }
  }
  return {shell, "-c", script};
}

}  // namespace wsa::exec
