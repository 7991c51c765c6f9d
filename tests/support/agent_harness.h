#pragma once
// Runs the real agent binary against a control server for integration tests.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/util.h"

namespace wsa::test {

std::string agentPath();

class AgentHarness {
 public:
  struct Options {
    std::vector<std::string> extra_args;
    std::vector<std::string> env;      // added to the agent's environment
    std::vector<std::string> wrapper;  // e.g. {"unshare", "--pid", "--fork", ...}
    bool token_in_file = true;
    std::string home;       // HOME for the agent (default: a temp dir)
    bool ssh = false;       // serve SSH on 127.0.0.1:0
    bool services = false;  // serve PTY, speed test and API on 127.0.0.1:0
  };
  AgentHarness(std::string url, std::string token, Options options);
  AgentHarness(std::string url, std::string token)
      : AgentHarness(std::move(url), std::move(token), Options()) {}
  ~AgentHarness();

  // Starts the agent and waits (bounded) for its local endpoints.
  void start();
  // Sends a signal to the agent (or the wrapper's child chain for PID 1 tests).
  void signal(int sig);
  // Waits for exit; nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM and wait (bounded).
  int stop();
  pid_t agentPid() const { return agent_pid_; }
  pid_t processPid() const { return process_ ? process_->pid() : -1; }
  std::string log() const { return readText(log_path_); }
  nlohmann::json debugState() const;
  std::string metrics() const;
  // GET a path on the agent's debug address; returns {status, body}.
  std::pair<int, std::string> debugGet(const std::string& path) const;
  const std::string& home() const { return home_; }
  const std::string& dir() const { return dir_.path(); }
  std::string logDir() const { return dir_.file("logs"); }
  int sshPort() const { return ssh_port_; }
  const std::string& sshFingerprint() const { return ssh_fingerprint_; }
  // The SSH host public key as an OpenSSH line.
  std::string sshHostPublicKey() const;
  Options& options() { return options_; }
  // The agent's ready file: bound addresses ("pty", "speedtest", "api", "prometheus", ...).
  const nlohmann::json& ready() const { return ready_; }
  // Where the agent serves /metrics and /debug/* ("127.0.0.1:port", in the agent's namespace).
  const std::string& prometheusAddress() const { return prometheus_; }
  const std::string& debugAddress() const { return debug_; }

 private:
  TempDir dir_;
  std::string url_;
  std::string token_;
  Options options_;
  std::string home_;
  std::string log_path_;
  std::string prometheus_;
  std::string debug_;
  pid_t agent_pid_ = -1;
  int ssh_port_ = 0;
  std::string ssh_fingerprint_;
  nlohmann::json ready_;
  std::unique_ptr<Process> process_;
};

}  // namespace wsa::test
