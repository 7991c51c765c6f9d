#include "support/ssh_client.h"

#include <stdexcept>

namespace wsa::test {

SshClient::SshClient() {
  key_ = dir_.file("id_ed25519");
  auto r = run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wsa-test", "-f", key_},
               std::chrono::seconds(20));
  if (r.code != 0) throw std::runtime_error("ssh-keygen: " + r.output);
  pub_ = readText(key_ + ".pub");
  config_ = dir_.file("ssh_config");
  known_hosts_ = dir_.file("known_hosts");
  writeText(known_hosts_, "");
  writeConfig();
}

void SshClient::writeConfig() const {
  writeText(config_,
            "Host test-host\n"
            "  HostName " +
                host_ +
                "\n"
                "  Port " +
                std::to_string(port_) +
                "\n"
                "  User tester\n"
                "  IdentityFile " +
                key_ +
                "\n"
                "  IdentitiesOnly yes\n"
                "  IdentityAgent none\n"
                "  BatchMode yes\n"
                "  StrictHostKeyChecking yes\n"
                "  UserKnownHostsFile " +
                known_hosts_ +
                "\n"
                "  GlobalKnownHostsFile /dev/null\n"
                "  LogLevel ERROR\n"
                "  ConnectTimeout 10\n"
                "  ServerAliveInterval 0\n");
}

void SshClient::trust(const std::string& host, int port, const std::string& host_public_key) {
  std::string line = "[" + host + "]:" + std::to_string(port) + " " + host_public_key;
  if (line.back() != '\n') line += "\n";
  writeText(known_hosts_, line);
  host_ = host;
  port_ = port;
  writeConfig();
}

std::vector<std::string> SshClient::sshArgv(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"ssh", "-F", config_};
  std::vector<std::string> opts;
  std::vector<std::string> command;
  bool after_host = false;
  for (const auto& a : args) {
    if (a == "--") {
      after_host = true;
      continue;
    }
    (after_host ? command : opts).push_back(a);
  }
  argv.insert(argv.end(), opts.begin(), opts.end());
  argv.push_back("test-host");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

SplitResult SshClient::ssh(const std::vector<std::string>& args, const std::string& stdin_data,
                           std::chrono::milliseconds timeout,
                           const std::vector<std::string>& env) const {
  return runSplit(sshArgv(args), timeout, env, stdin_data);
}

SplitResult SshClient::scp(const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {"scp", "-F", config_};
  argv.insert(argv.end(), args.begin(), args.end());
  return runSplit(argv, timeout);
}

SplitResult SshClient::sftp(const std::string& batch, std::chrono::milliseconds timeout) const {
  writeText(dir_.file("batch"), batch);
  return runSplit({"sftp", "-F", config_, "-b", dir_.file("batch"), "test-host"}, timeout);
}

}  // namespace wsa::test
