#pragma once
// SshServer internals shared with connections (thread-safe members only).

#include <libssh/server.h>
#include <spdlog/logger.h>

#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "ssh/keys.h"
#include "wsa/net/listener.h"
#include "wsa/ssh/ssh_server.h"

namespace asio {
class io_context;
}

namespace wsa::ssh {

class Connection;

class SshServer::Impl {
 public:
  Impl(asio::io_context& io, SshServer& owner, SshServerOptions options, SshServer::Hooks hooks,
       KeyPtr host_key);
  ~Impl();

  const SshServerOptions& options() const { return options_; }
  SshCounters& counters() { return owner_.counters_; }
  const std::shared_ptr<spdlog::logger>& log() const { return log_; }
  std::shared_ptr<const SessionContext> contextSnapshot() const;
  void setContext(std::shared_ptr<const SessionContext> ctx);
  // The authorized keys, re-read when the file changes.
  std::shared_ptr<const AuthorizedKeys> authorizedKeys();
  int acceptFd(ssh_bind bind, ssh_session session, int fd);
  void sessionStarted(SessionKind kind);
  void sessionEnded(SessionKind kind);
  // Audit reports, posted to the agent's loop. reportConnect returns the connection id.
  std::string reportConnect(SessionKind kind, const std::string& ip);
  void reportDisconnect(const std::string& id, SessionKind kind, const std::string& ip, int code,
                        const std::string& reason);
  static void localAddress(int fd, std::string* ip, uint16_t* port);
  std::string fingerprint() const { return fingerprint_; }
  // A session's process outlives its connection: reap it (on the loop) when it exits, and
  // SIGHUP its group at shutdown if it is a non-PTY command. Any thread; takes the pidfd.
  void adoptChild(pid_t pid, int pidfd, bool signal_group_at_shutdown);

  Result<std::string> listen(const std::string& address);
  void serveFd(int fd, std::string peer, bool from_overlay = false);
  void stopAccepting();
  void shutdown();

 private:
  void reapFinished();

  asio::io_context& io_;
  SshServer& owner_;
  SshServerOptions options_;
  SshServer::Hooks hooks_;
  std::shared_ptr<spdlog::logger> log_;
  std::string fingerprint_;
  ssh_bind bind_ = nullptr;
  std::mutex bind_mu_;
  mutable std::mutex ctx_mu_;
  std::shared_ptr<const SessionContext> ctx_;
  std::mutex keys_mu_;
  std::shared_ptr<const AuthorizedKeys> keys_;
  int64_t keys_mtime_ = -1;
  struct Running {
    std::unique_ptr<Connection> conn;
    std::thread thread;
  };
  std::map<uint64_t, Running> connections_;  // loop thread only
  struct Adopted;
  std::map<pid_t, std::shared_ptr<Adopted>> adopted_;  // loop thread only
  uint64_t next_id_ = 1;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  bool accepting_ = true;
};

}  // namespace wsa::ssh
