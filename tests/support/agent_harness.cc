#include "support/agent_harness.h"

#include <signal.h>
#include <sys/stat.h>

#include <stdexcept>

#include "support/http_client.h"

namespace wsa::test {

std::string agentPath() {
  return WSA_AGENT_PATH;
}

AgentHarness::AgentHarness(std::string url, std::string token, Options options)
    : url_(std::move(url)), token_(std::move(token)), options_(std::move(options)) {
  home_ = options_.home.empty() ? dir_.file("home") : options_.home;
  ::mkdir(home_.c_str(), 0755);
  log_path_ = dir_.file("agent.log");
}

AgentHarness::~AgentHarness() {
  if (process_) process_->kill();
}

void AgentHarness::start() {
  std::string ready = dir_.file("ready.json");
  ::unlink(ready.c_str());
  Process::Options o;
  o.argv = options_.wrapper;
  std::vector<std::string> args = {agentPath(),
                                   "--url",
                                   url_,
                                   "--log-dir",
                                   dir_.file("logs"),
                                   "--script-data-dir",
                                   dir_.file("scripts"),
                                   "--prometheus-address",
                                   "127.0.0.1:0",
                                   "--debug-address",
                                   "127.0.0.1:0",
                                   "--ready-file",
                                   ready,
                                   "--data-dir",
                                   dir_.file("state"),
                                   "--log-level",
                                   "debug"};
  if (options_.ssh) args.insert(args.end(), {"--ssh-listen", "127.0.0.1:0"});
  if (options_.services) {
    args.insert(args.end(), {"--pty-listen", "127.0.0.1:0", "--speedtest-listen", "127.0.0.1:0",
                             "--api-listen", "127.0.0.1:0"});
  }
  if (options_.token_in_file) {
    writeText(dir_.file("token"), token_ + "\n");
    ::chmod(dir_.file("token").c_str(), 0600);
    args.insert(args.end(), {"--token-file", dir_.file("token")});
  } else {
    o.env.push_back("WSA_AGENT_TOKEN=" + token_);
  }
  for (const auto& a : options_.extra_args) args.push_back(a);
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.env.push_back("HOME=" + home_);
  for (const auto& e : options_.env) o.env.push_back(e);
  o.unset_env = {"WSA_AGENT_URL", "WSA_AGENT_TOKEN_FILE"};
  o.stdout_path = log_path_;
  o.stderr_path = log_path_;
  process_ = Process::start(o);
  if (!waitForReadyFile(*process_, ready, std::chrono::milliseconds(20000))) {
    throw std::runtime_error("agent did not start; log:\n" + log());
  }
  auto j = nlohmann::json::parse(readText(ready));
  prometheus_ = j["prometheus"];
  debug_ = j["debug"];
  agent_pid_ = j["pid"];
  std::string ssh = j.value("ssh", "");
  if (!ssh.empty()) ssh_port_ = std::stoi(ssh.substr(ssh.rfind(':') + 1));
  ssh_fingerprint_ = j.value("ssh_host_key", "");
  ready_ = j;
}

void AgentHarness::signal(int sig) {
  if (process_) process_->signal(sig);
}

std::optional<int> AgentHarness::wait(std::chrono::milliseconds timeout) {
  if (!process_) return -1;
  return process_->wait(scaled(timeout));
}

int AgentHarness::stop() {
  signal(SIGTERM);
  auto code = wait(std::chrono::milliseconds(30000));
  if (!code) {
    process_->kill();
    return -1;
  }
  return *code;
}

nlohmann::json AgentHarness::debugState() const {
  auto r = httpRequest("GET", "http://" + debug_ + "/debug/state");
  if (r.status != 200) throw std::runtime_error("debug state: " + r.error);
  return nlohmann::json::parse(r.body);
}

std::pair<int, std::string> AgentHarness::debugGet(const std::string& path) const {
  auto r = httpRequest("GET", "http://" + debug_ + path);
  return {r.status, r.body};
}

std::string AgentHarness::sshHostPublicKey() const {
  auto r = run({"ssh-keygen", "-y", "-f", dir_.file("state") + "/ssh_host_ed25519_key"},
               std::chrono::seconds(10));
  return r.output;
}

std::string AgentHarness::metrics() const {
  return httpRequest("GET", "http://" + prometheus_ + "/metrics").body;
}

}  // namespace wsa::test
