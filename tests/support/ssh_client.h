#pragma once
// The real OpenSSH client tools (ssh, scp, sftp) against a test server: a throwaway key pair,
// a private ssh_config with BatchMode and strict host key checking against a known_hosts file
// holding the server's key. The config is written only when the target changes, so many
// clients may run at once.

#include <string>
#include <vector>

#include "support/process.h"
#include "support/util.h"

namespace wsa::test {

class SshClient {
 public:
  SshClient();
  const std::string& publicKey() const { return pub_; }
  const std::string& keyPath() const { return key_; }
  // Trusts this host key (OpenSSH public key line) for host:port.
  void trust(const std::string& host, int port, const std::string& host_public_key);
  void setTarget(const std::string& host, int port) {
    host_ = host;
    port_ = port;
    writeConfig();
  }
  // ssh [options] test-host [command...]
  SplitResult ssh(const std::vector<std::string>& args, const std::string& stdin_data = "",
                  std::chrono::milliseconds timeout = std::chrono::seconds(30),
                  const std::vector<std::string>& env = {}) const;
  SplitResult scp(const std::vector<std::string>& args,
                  std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  SplitResult sftp(const std::string& batch,
                   std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  // Arguments for a Process that runs ssh (for long-lived sessions, tmux, forwarding).
  std::vector<std::string> sshArgv(const std::vector<std::string>& args) const;
  std::string remote(const std::string& path) const { return "test-host:" + path; }
  const std::string& configPath() const { return config_; }

 private:
  void writeConfig() const;
  TempDir dir_;
  std::string key_;
  std::string pub_;
  std::string config_;
  std::string known_hosts_;
  std::string host_ = "127.0.0.1";
  int port_ = 22;
};

}  // namespace wsa::test
