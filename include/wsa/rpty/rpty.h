#pragma once
// Reconnecting PTY sessions (the agent's port 2; `--pty-listen` until the overlay exists).
//
// Wire protocol, per connection:
//   client → agent: a 2-byte little-endian length N, then N bytes of JSON init
//                   {"id": "...", "height": 24, "width": 80, "command": ""}  (reference-style
//                   "ID"/"Height"/"Width"/"Command" keys are accepted too), then a stream of
//                   JSON objects {"data": "...", "height": H, "width": W}.
//   agent → client: terminal output, raw.
// A new id starts a process (the command, or the user's login shell) on a PTY; later connections
// with that id attach to it, and all attached clients see the same output. A client that
// attaches gets the current state of the terminal — screen, cursor, modes, alternate screen,
// recent scrollback — redrawn from a screen model (term::ScreenModel), then live output. The
// session ends when its process exits (clients get EOF) or when no client has been attached for
// the idle timeout.

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "wsa/agent/v1/connection.pb.h"
#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/net/stream.h"
#include "wsa/term/child.h"

namespace asio {
class io_context;
}

namespace wsa::rpty {

struct Options {
  Duration idle_timeout = std::chrono::minutes(5);
  Duration init_timeout = std::chrono::seconds(30);
  size_t max_init_bytes = 4096;
  size_t max_message_bytes = 1u << 20;  // one JSON input message
  size_t max_client_queue = 4u << 20;   // output waiting for one slow client
  size_t max_input_queue = 1u << 20;    // input waiting for the PTY
  size_t max_sessions = 64;
  size_t max_connections = 256;
  size_t scrollback_bytes = 256 * 1024;
};

struct Hooks {
  // The process for a session: command (empty: login shell) and initial size.
  std::function<Result<term::ChildSpec>(const std::string& command, term::PtySize size)> command;
  std::function<void(wsa::agent::v1::ReportConnectionRequest)> report;
  // Counts by reason ("bad_init", "too_slow", "spawn", ...) for metrics.
  std::function<void(const std::string& what)> error;
  std::function<void()> connection_opened;
};

class Server {
 public:
  Server(asio::io_context& io, Clock& clock, Options options, Hooks hooks);
  ~Server();
  Result<std::string> listen(const std::string& address);
  void serve(net::ByteStreamPtr stream);
  void stopAccepting();
  // Ends every session (SIGHUP, then SIGKILL) and closes every connection.
  void shutdown();
  size_t sessions() const;
  size_t attached() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The environment adjustments for terminal sessions: TERM=xterm-256color, and LC_CTYPE=C.UTF-8
// when the effective locale (LC_ALL, else LC_CTYPE, else LANG) is not UTF-8 and LC_ALL is unset.
void withTerminalEnv(std::map<std::string, std::string>* env);

}  // namespace wsa::rpty
