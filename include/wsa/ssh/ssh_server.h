#pragma once
// The agent's SSH server (libssh). Connections are accepted on the agent's loop and each runs
// in its own thread with libssh's event loop, so a slow client never stalls the agent or other
// connections. Within a connection every channel is flow-controlled: output is read from a
// process or socket only as fast as the peer's window allows, and input is taken from the
// peer only as fast as the process or socket accepts it.
//
// Session threads never touch agent state: they read an immutable SessionContext snapshot the
// agent publishes (environment inputs, directory, banners, MOTD) and report back through
// callbacks the agent posts onto its loop.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "wsa/agent/v1/banner.pb.h"
#include "wsa/agent/v1/connection.pb.h"
#include "wsa/common/result.h"

namespace wsa::exec {
struct CommandContext;
}

namespace asio {
class io_context;
}

namespace wsa::ssh {

// What sessions need from the agent, published as an immutable snapshot.
struct SessionContext {
  // What the session's command is built from (exec::buildCommand); never null.
  std::shared_ptr<const exec::CommandContext> command;
  std::vector<wsa::agent::v1::BannerConfig> banners;
  std::string motd_path;
};

enum class SessionKind { kSsh, kVscode, kJetbrains, kUnknown };
const char* kindName(SessionKind k);

struct SshServerOptions {
  std::string host_key_path;
  // Public-key authentication against this file; empty: no authentication (the overlay is the
  // access boundary).
  std::string authorized_keys_path;
  bool require_auth = true;
  bool block_file_transfer = false;
  bool block_local_port_forwarding = false;
  bool block_reverse_port_forwarding = false;
  bool block_agent_forwarding = false;
  bool block_x11_forwarding = false;
  std::chrono::seconds max_timeout{72 * 3600};  // keepalive every third of it, 3 missed = dead
  std::chrono::milliseconds shutdown_grace{5000};
  size_t max_connections = 256;
};

struct SshCounters {
  std::atomic<int64_t> sessions_ssh{0};
  std::atomic<int64_t> sessions_vscode{0};
  std::atomic<int64_t> sessions_jetbrains{0};
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> sessions_total{0};
  std::atomic<uint64_t> failed_connections{0};
  std::atomic<uint64_t> sftp_sessions{0};
};

class SshServer {
 public:
  struct Hooks {
    // Runs `fn` on the agent's loop (from any thread).
    std::function<void(std::function<void()>)> post;
    // Connection audit: CONNECT at session start, DISCONNECT (with exit code) at its end.
    std::function<void(wsa::agent::v1::ReportConnectionRequest)> report;
  };

  static Result<std::unique_ptr<SshServer>> create(asio::io_context& io, SshServerOptions options,
                                                   Hooks hooks);
  ~SshServer();

  // Listens on "host:port" (loopback or not) and serves connections. Loop thread.
  Result<std::string> listen(const std::string& address);
  // Serves an already-connected socket. `from_overlay`: a connection that arrived through the
  // overlay, where reaching the agent is the authorisation (no SSH authentication is asked
  // for, as with the reference agent); `peer` is then the overlay "ip:port".
  void serveFd(int fd, std::string peer, bool from_overlay = false);
  void setContext(std::shared_ptr<const SessionContext> ctx);
  std::shared_ptr<const SessionContext> context() const;
  // Graceful: stop accepting; existing connections continue.
  void stopAccepting();
  // Hard: close every connection (bounded by shutdown_grace), signal the process groups of
  // non-PTY commands, join the threads. Loop thread.
  void shutdown();
  SshCounters& counters() { return counters_; }
  std::string hostKeyFingerprint() const;
  const SshServerOptions& options() const { return options_; }

  class Impl;

 private:
  SshServer() = default;
  std::unique_ptr<Impl> impl_;
  SshServerOptions options_;
  SshCounters counters_;
};

}  // namespace wsa::ssh
