#include "ssh/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ssh/server_impl.h"
#include "wsa/common/fs.h"
#include "wsa/common/logging.h"
#include "wsa/common/strings.h"
#include "wsa/common/uuid.h"
#include "wsa/net/address.h"

namespace wsa::ssh {

namespace v1 = wsa::agent::v1;

namespace {

constexpr size_t kMaxBuffered = 1u << 20;  // per direction and channel
constexpr size_t kReadChunk = 32 * 1024;
constexpr int kBlockedFileTransferCode = 65;
constexpr int kInternalErrorCode = 229;
constexpr size_t kMaxEnvRequests = 256;

void setNonBlocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int signalFromName(const std::string& name) {
  static const std::map<std::string, int> m = {
      {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"FPE", SIGFPE},   {"HUP", SIGHUP},   {"ILL", SIGILL},
      {"INT", SIGINT},   {"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV},
      {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
  auto it = m.find(name);
  return it == m.end() ? SIGKILL : it->second;
}

std::string signalName(int sig) {
  switch (sig) {
    case SIGABRT:
      return "ABRT";
    case SIGALRM:
      return "ALRM";
    case SIGFPE:
      return "FPE";
    case SIGHUP:
      return "HUP";
    case SIGILL:
      return "ILL";
    case SIGINT:
      return "INT";
    case SIGKILL:
      return "KILL";
    case SIGPIPE:
      return "PIPE";
    case SIGQUIT:
      return "QUIT";
    case SIGSEGV:
      return "SEGV";
    case SIGTERM:
      return "TERM";
    case SIGUSR1:
      return "USR1";
    case SIGUSR2:
      return "USR2";
    default:
      return "KILL";
  }
}

// Lines terminated with \r\n, as a raw PTY needs them.
std::string crlf(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

const char* const kSftpServers[] = {"/usr/lib/openssh/sftp-server",
                                    "/usr/libexec/openssh/sftp-server", "/usr/lib/ssh/sftp-server",
                                    "/usr/libexec/sftp-server"};

}  // namespace

const char* kindName(SessionKind k) {
  switch (k) {
    case SessionKind::kSsh:
      return "ssh";
    case SessionKind::kVscode:
      return "vscode";
    case SessionKind::kJetbrains:
      return "jetbrains";
    default:
      return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------
// Relay

Relay::Relay(Connection& conn, ssh_channel ch, int read_fd, int err_fd, int write_fd)
    : conn_(conn), ch_(ch), read_fd_(read_fd), err_fd_(err_fd), write_fd_(write_fd) {
  same_fd_ = read_fd_ >= 0 && read_fd_ == write_fd_;
  if (err_fd_ < 0) err_eof_ = true;
  if (read_fd_ < 0) read_eof_ = true;
  updateWatch();
}

Relay::~Relay() {
  closeFds();
}

void Relay::closeFds() {
  for (int* fd : {&read_fd_, &err_fd_, &write_fd_}) {
    if (*fd >= 0) {
      int f = *fd;
      conn_.watch(f, 0, nullptr);
      if (!(fd == &write_fd_ && same_fd_)) conn_.closeLater(f);
      *fd = -1;
    }
  }
}

void Relay::updateWatch() {
  // One registration per fd: sockets and PTY masters read and write the same descriptor.
  auto want_read = [&](bool eof, const std::string& buf) {
    return !eof && buf.size() < kMaxBuffered;
  };
  short rd = (read_fd_ >= 0 && want_read(read_eof_, out_)) ? POLLIN : 0;
  short wr = (write_fd_ >= 0 && !in_.empty()) ? POLLOUT : 0;
  if (same_fd_) {
    if (read_fd_ >= 0) {
      conn_.watch(read_fd_, static_cast<short>(rd | wr), [this](int rev) {
        if (rev & (POLLIN | POLLHUP | POLLERR)) onReadable(read_fd_);
        if (rev & POLLOUT) onWritable();
      });
    }
  } else {
    if (read_fd_ >= 0) {
      conn_.watch(read_fd_, rd, [this, fd = read_fd_](int) { onReadable(fd); });
    }
    if (write_fd_ >= 0) conn_.watch(write_fd_, wr, [this](int) { onWritable(); });
  }
  if (err_fd_ >= 0) {
    short er = want_read(err_eof_, err_) ? POLLIN : 0;
    conn_.watch(err_fd_, er, [this, fd = err_fd_](int) { onReadable(fd); });
  }
}

void Relay::onReadable(int fd) {
  bool is_err = fd == err_fd_ && fd >= 0;
  std::string& buf = is_err ? err_ : out_;
  bool& eof = is_err ? err_eof_ : read_eof_;
  if (eof || fd < 0) return;
  char tmp[kReadChunk];
  while (buf.size() < kMaxBuffered) {
    ssize_t n = ::read(fd, tmp, sizeof(tmp));
    if (n > 0) {
      buf.append(tmp, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    eof = true;  // EOF, or EIO from a PTY whose last writer is gone
    break;
  }
  flushOut();
  updateWatch();
}

void Relay::drainNow() {
  if (read_fd_ >= 0 && !read_eof_) onReadable(read_fd_);
  if (err_fd_ >= 0 && !err_eof_) onReadable(err_fd_);
}

void Relay::flushOut() {
  // ssh_channel_write may process incoming packets and so run our callbacks (write_wontblock,
  // data) before it returns: a nested flush would send the unerased head of the buffer twice.
  if (flushing_out_) return;
  flushing_out_ = true;
  for (bool is_err : {false, true}) {
    std::string& buf = is_err ? err_ : out_;
    while (!buf.empty()) {
      uint32_t window = ssh_channel_window_size(ch_);
      if (window == 0) break;
      size_t n = std::min<size_t>({buf.size(), window, kReadChunk});
      int w = is_err ? ssh_channel_write_stderr(ch_, buf.data(), static_cast<uint32_t>(n))
                     : ssh_channel_write(ch_, buf.data(), static_cast<uint32_t>(n));
      if (w <= 0) break;
      buf.erase(0, static_cast<size_t>(w));
    }
  }
  flushing_out_ = false;
}

void Relay::onWindowOpened() {
  flushOut();
  updateWatch();
}

int Relay::onChannelData(const char* data, uint32_t len) {
  if (write_fd_ < 0) return static_cast<int>(len);  // nowhere to go: discard
  size_t taken = 0;
  if (in_.empty()) {
    while (taken < len) {
      ssize_t w = ::write(write_fd_, data + taken, len - taken);
      if (w > 0) {
        taken += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // The reader is gone (process exited, socket closed): drop input from now on.
      return static_cast<int>(len);
    }
  }
  size_t room = kMaxBuffered > in_.size() ? kMaxBuffered - in_.size() : 0;
  size_t keep = std::min<size_t>(room, len - taken);
  in_.append(data + taken, keep);
  updateWatch();
  // What we neither wrote nor buffered stays with libssh, which holds back the peer's window.
  return static_cast<int>(taken + keep);
}

void Relay::onWritable() {
  flushIn();
}

void Relay::flushIn() {
  if (flushing_in_) return;  // ssh_channel_read_nonblocking below can call onChannelData
  flushing_in_ = true;
  while (!in_.empty() && write_fd_ >= 0) {
    ssize_t w = ::write(write_fd_, in_.data(), in_.size());
    if (w > 0) {
      in_.erase(0, static_cast<size_t>(w));
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    in_.clear();
    break;
  }
  // Pull what libssh held back while our buffer was full.
  while (in_.size() < kMaxBuffered && write_fd_ >= 0 && ch_ != nullptr &&
         !ssh_channel_is_closed(ch_)) {
    char tmp[kReadChunk];
    int n = ssh_channel_read_nonblocking(ch_, tmp, sizeof(tmp), 0);
    if (n <= 0) break;
    in_.append(tmp, static_cast<size_t>(n));
    while (!in_.empty()) {
      ssize_t w = ::write(write_fd_, in_.data(), in_.size());
      if (w <= 0) break;
      in_.erase(0, static_cast<size_t>(w));
    }
    if (!in_.empty()) break;
  }
  flushing_in_ = false;
  if (in_.empty() && channel_eof_ && write_fd_ >= 0 && !same_fd_) {
    conn_.watch(write_fd_, 0, nullptr);
    conn_.closeLater(write_fd_);
    write_fd_ = -1;
  } else if (in_.empty() && channel_eof_ && same_fd_ && read_fd_ >= 0) {
    ::shutdown(read_fd_, SHUT_WR);  // sockets: half-close; PTYs ignore it
  }
  updateWatch();
}

void Relay::onChannelEof() {
  channel_eof_ = true;
  flushIn();
}

bool Relay::outputDone() const {
  return read_eof_ && err_eof_ && out_.empty() && err_.empty();
}

// ---------------------------------------------------------------------------------------------
// Channels

class Connection::Channel {
 public:
  explicit Channel(Connection& c) : conn_(c) {}
  virtual ~Channel() = default;
  // Called after every poll: advance state machines. Returns false once the channel is gone.
  virtual bool poll() = 0;
  virtual void forceClose() = 0;

 protected:
  Connection& conn_;
};

// "session" channels: shell, exec, subsystem (sftp).
class Connection::SessionChannel final : public Connection::Channel {
 public:
  explicit SessionChannel(Connection& c) : Channel(c) {
    ch_ = ssh_channel_new(c.session_);
    ssh_callbacks_init(&cb_);
    cb_.userdata = this;
    cb_.channel_data_function = [](ssh_session, ssh_channel, void* d, uint32_t len, int, void* u) {
      return static_cast<SessionChannel*>(u)->onData(static_cast<const char*>(d), len);
    };
    cb_.channel_eof_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<SessionChannel*>(u)->onEof();
    };
    cb_.channel_close_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<SessionChannel*>(u)->onClose();
    };
    cb_.channel_signal_function = [](ssh_session, ssh_channel, const char* sig, void* u) {
      static_cast<SessionChannel*>(u)->onSignal(sig);
    };
    cb_.channel_pty_request_function = [](ssh_session, ssh_channel, const char* term, int w, int h,
                                          int pw, int ph, void* u) {
      return static_cast<SessionChannel*>(u)->onPty(term, w, h, pw, ph);
    };
    cb_.channel_pty_window_change_function = [](ssh_session, ssh_channel, int w, int h, int pw,
                                                int ph, void* u) {
      return static_cast<SessionChannel*>(u)->onWindowChange(w, h, pw, ph);
    };
    cb_.channel_env_request_function = [](ssh_session, ssh_channel, const char* n, const char* v,
                                          void* u) {
      return static_cast<SessionChannel*>(u)->onEnv(n, v);
    };
    cb_.channel_shell_request_function = [](ssh_session, ssh_channel, void* u) {
      return static_cast<SessionChannel*>(u)->onStart("", false);
    };
    cb_.channel_exec_request_function = [](ssh_session, ssh_channel, const char* cmd, void* u) {
      return static_cast<SessionChannel*>(u)->onStart(cmd, false);
    };
    cb_.channel_subsystem_request_function = [](ssh_session, ssh_channel, const char* sub,
                                                void* u) {
      return static_cast<SessionChannel*>(u)->onSubsystem(sub);
    };
    cb_.channel_write_wontblock_function = [](ssh_session, ssh_channel, uint32_t, void* u) {
      auto* self = static_cast<SessionChannel*>(u);
      if (self->relay_) self->relay_->onWindowOpened();
      return 0;
    };
    cb_.channel_auth_agent_req_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<SessionChannel*>(u)->conn_.enableAgentForwarding();
    };
    cb_.channel_x11_req_function = [](ssh_session, ssh_channel, int single, const char* proto,
                                      const char* cookie, uint32_t screen, void* u) {
      static_cast<SessionChannel*>(u)->conn_.enableX11(single != 0, proto != nullptr ? proto : "",
                                                       cookie != nullptr ? cookie : "", screen);
    };
    ssh_set_channel_callbacks(ch_, &cb_);
  }
  ~SessionChannel() override {
    relay_.reset();
    endAccounting(255, "client disconnected");
    if (child_.pid > 0 && !exited_) {
      // The connection is gone. A PTY session ends with it; a non-PTY command keeps running
      // (OpenSSH semantics). Either way the server reaps the process when it exits.
      if (pty_) ::kill(child_.pid, SIGHUP);
      conn_.server().adoptChild(child_.pid, child_.pidfd, !pty_);
      child_.pidfd = -1;
    }
    if (child_.pidfd >= 0) {
      conn_.watch(child_.pidfd, 0, nullptr);
      conn_.closeLater(child_.pidfd);
    }
    if (ch_ != nullptr) {
      ssh_remove_channel_callbacks(ch_, &cb_);  // libssh 0.10 may call back into freed channels
      ssh_channel_free(ch_);
    }
  }
  ssh_channel channel() const { return ch_; }

  bool poll() override {
    // libssh 0.10 does not report a reopened window: offer pending output after every poll.
    if (relay_) relay_->onWindowOpened();
    if (close_pending_ && ssh_channel_close(ch_) != SSH_AGAIN) close_pending_ = false;
    if (closed_by_peer_ && !started_) return false;
    if (started_ && exited_ && !sent_exit_) {
      if (pty_) relay_->drainNow();
      if (relay_->outputDone() || pty_) {
        relay_->drainNow();
        finishSession();
      }
    }
    if (sent_exit_ && closed_by_peer_) return false;
    return true;
  }

  void forceClose() override {
    if (pty_ && child_.pid > 0 && !exited_) ::kill(child_.pid, SIGHUP);
    if (ch_ != nullptr && !ssh_channel_is_closed(ch_)) ssh_channel_close(ch_);
    closed_by_peer_ = true;
  }

  pid_t liveGroup() const { return (!pty_ && child_.pid > 0 && !exited_) ? child_.pid : -1; }

 private:
  int onData(const char* data, uint32_t len) {
    if (!relay_) return static_cast<int>(len);
    return relay_->onChannelData(data, len);
  }
  void onEof() {
    if (relay_ && !pty_) relay_->onChannelEof();
  }
  void onClose() {
    closed_by_peer_ = true;
    // A PTY session ends with its client; non-PTY commands keep running (OpenSSH semantics).
    if (pty_ && child_.pid > 0 && !exited_) ::kill(child_.pid, SIGHUP);
  }
  void onSignal(const char* sig) {
    if (child_.pid <= 0 || exited_) return;
    int s = signalFromName(sig != nullptr ? sig : "");
    ::kill(pty_ ? child_.pid : -child_.pid, s);
  }
  int onPty(const char* term, int w, int h, int pw, int ph) {
    if (started_) return 1;
    pty_ = true;
    term_ = term != nullptr ? term : "xterm";
    size_ = {h > 0 ? h : 24, w > 0 ? w : 80, pw, ph};
    return 0;
  }
  int onWindowChange(int w, int h, int pw, int ph) {
    size_ = {h, w, pw, ph};
    if (child_.master >= 0) setWindowSize(child_.master, size_);
    return 0;
  }
  int onEnv(const char* name, const char* value) {
    if (name == nullptr || value == nullptr || env_.size() >= kMaxEnvRequests) return 1;
    env_[name] = value;
    return 0;
  }
  int onSubsystem(const char* sub) {
    std::string s = sub != nullptr ? sub : "";
    if (s != "sftp") return 1;
    auto& opts = conn_.server().options();
    if (opts.block_file_transfer) return 1;
    for (const char* path : kSftpServers) {
      if (::access(path, X_OK) == 0) {
        conn_.server().counters().sftp_sessions++;
        sftp_ = true;
        return onStart(path, true);
      }
    }
    conn_.server().log()->warn(
        "sftp requested but no sftp-server binary is installed "
        "(Debian: apt-get install openssh-sftp-server)");
    return 1;
  }

  SessionKind takeKind() {
    std::string v;
    for (const char* key : {"WSA_SSH_SESSION_TYPE"}) {
      auto it = env_.find(key);
      if (it != env_.end()) {
        v = toLower(it->second);
        env_.erase(it);
      }
    }
    if (v.empty() || v == "ssh") return SessionKind::kSsh;
    if (v == "vscode") return SessionKind::kVscode;
    if (v == "jetbrains") return SessionKind::kJetbrains;
    return SessionKind::kUnknown;
  }

  int onStart(const std::string& command, bool subsystem) {
    if (started_) return 1;
    started_ = true;
    kind_ = takeKind();
    auto ctx = conn_.server().contextSnapshot();
    auto& server = conn_.server();
    server.sessionStarted(kind_);
    counted_ = true;
    // Blocked file transfer: refuse the well-known transfer commands by name.
    if (server.options().block_file_transfer && !subsystem && isFileTransfer(command)) {
      const char msg[] =
          "\x02"
          "File transfer has been disabled.\n";
      ssh_channel_write_stderr(ch_, msg, sizeof(msg) - 1);
      exit_code_ = kBlockedFileTransferCode;
      conn_id_ = server.reportConnect(kind_, conn_.peerIp());
      exited_ = true;
      blocked_ = true;
      relay_ = std::make_unique<Relay>(conn_, ch_, -1, -1, -1);
      return 0;
    }
    exec::Invocation run = subsystem         ? exec::Invocation::program({command})
                           : command.empty() ? exec::Invocation::loginShell()
                                             : exec::Invocation::shellScript(command);
    login_ = run.kind == exec::Invocation::Kind::kLoginShell;
    exec::BuiltCommand cmd = exec::buildCommand(*ctx->command, run, env_);
    exec::EnvMap& env = cmd.env;
    std::string local_ip = "0.0.0.0";
    uint16_t local_port = 0;
    server.localAddress(conn_.fd_, &local_ip, &local_port);
    env["SSH_CLIENT"] =
        conn_.peerIp() + " " + std::to_string(conn_.peerPort()) + " " + std::to_string(local_port);
    env["SSH_CONNECTION"] = conn_.peerIp() + " " + std::to_string(conn_.peerPort()) + " " +
                            local_ip + " " + std::to_string(local_port);
    if (pty_) env["TERM"] = term_;
    if (!conn_.agent_socket_.empty()) env["SSH_AUTH_SOCK"] = conn_.agent_socket_;
    if (!conn_.x11_display_.empty()) env["DISPLAY"] = conn_.x11_display_;
    if (pty_) env["SSH_TTY"] = "";  // filled in with the terminal's name by spawnChild
    ChildSpec spec = term::childSpec(cmd);
    spec.pty = pty_;
    spec.size = size_;
    if (login_ && pty_) writeGreeting(*ctx);
    auto child = spawnChild(spec);
    conn_id_ = server.reportConnect(kind_, conn_.peerIp());
    if (!child) {
      std::string msg = "wsa-agent: " + child.error() + "\r\n";
      ssh_channel_write_stderr(ch_, msg.data(), static_cast<uint32_t>(msg.size()));
      exit_code_ = pty_ ? 127 : kInternalErrorCode;
      exited_ = true;
      relay_ = std::make_unique<Relay>(conn_, ch_, -1, -1, -1);
      return 0;
    }
    child_ = *child;
    if (pty_) {
      relay_ = std::make_unique<Relay>(conn_, ch_, child_.master, -1, child_.master);
    } else {
      relay_ =
          std::make_unique<Relay>(conn_, ch_, child_.stdout_fd, child_.stderr_fd, child_.stdin_fd);
      std::lock_guard l(conn_.groups_mu_);
      conn_.groups_.push_back(child_.pid);
    }
    conn_.watch(child_.pidfd, POLLIN, [this](int) { onChildExit(); });
    return 0;
  }

  static bool isFileTransfer(const std::string& command) {
    std::string_view c = trim(command);
    std::string first(c.substr(0, c.find_first_of(" \t")));
    auto slash = first.rfind('/');
    if (slash != std::string::npos) first = first.substr(slash + 1);
    return first == "scp" || first == "sftp" || first == "rsync" || first == "nc" ||
           first == "sftp-server";
  }

  void writeGreeting(const SessionContext& ctx) {
    std::string text;
    for (const auto& b : ctx.banners) {
      if (!b.enabled() || trim(b.message()).empty()) continue;
      text += std::string(trim(b.message())) + "\n\n";
    }
    bool hushed = fileExists(ctx.command->user.home + "/.hushlogin");
    if (!hushed && !ctx.motd_path.empty()) {
      auto motd = readFile(ctx.motd_path, 64 * 1024);
      if (motd) text += *motd;
    }
    if (text.empty()) return;
    std::string out = crlf(text);
    ssh_channel_write(ch_, out.data(), static_cast<uint32_t>(out.size()));
  }

  void onChildExit() {
    int st = 0;
    if (::waitpid(child_.pid, &st, WNOHANG) != child_.pid) return;
    conn_.watch(child_.pidfd, 0, nullptr);
    conn_.closeLater(child_.pidfd);
    child_.pidfd = -1;
    exited_ = true;
    if (WIFEXITED(st)) {
      exit_code_ = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
      exit_signal_ = WTERMSIG(st);
      exit_code_ = 255;
    }
    std::lock_guard l(conn_.groups_mu_);
    auto& g = conn_.groups_;
    g.erase(std::remove(g.begin(), g.end(), child_.pid), g.end());
  }

  void finishSession() {
    sent_exit_ = true;
    if (ch_ != nullptr && !ssh_channel_is_closed(ch_)) {
      if (exit_signal_ != 0) {
        ssh_channel_request_send_exit_signal(ch_, signalName(exit_signal_).c_str(), 0, "", "");
      } else {
        ssh_channel_request_send_exit_status(ch_, exit_code_);
      }
      ssh_channel_send_eof(ch_);
      // Non-blocking: CLOSE may not go out at once; poll() retries.
      close_pending_ = ssh_channel_close(ch_) == SSH_AGAIN;
    }
    if (relay_) relay_->closeFds();
    if (child_.master >= 0) child_.master = -1;  // closed by the relay
    endAccounting(exit_code_,
                  exit_signal_ != 0 ? "killed by signal " + signalName(exit_signal_) : "");
  }

  // Once per session: the session count goes down and the DISCONNECT is reported.
  void endAccounting(int code, const std::string& reason) {
    if (!counted_) return;
    counted_ = false;
    auto& server = conn_.server();
    server.sessionEnded(kind_);
    server.reportDisconnect(conn_id_, kind_, conn_.peerIp(), code, reason);
  }

  ssh_channel ch_ = nullptr;
  struct ssh_channel_callbacks_struct cb_ {};
  std::map<std::string, std::string> env_;
  bool pty_ = false;
  bool login_ = false;
  bool sftp_ = false;
  bool blocked_ = false;
  std::string term_ = "xterm";
  PtySize size_;
  Child child_;
  std::unique_ptr<Relay> relay_;
  bool started_ = false;
  bool exited_ = false;
  bool sent_exit_ = false;
  bool closed_by_peer_ = false;
  bool counted_ = false;
  bool close_pending_ = false;
  int exit_code_ = 0;
  int exit_signal_ = 0;
  SessionKind kind_ = SessionKind::kSsh;
  std::string conn_id_;
};

// Channels carrying a byte stream to a socket: direct-tcpip, forwarded-tcpip, and friends.
class Connection::ForwardChannel final : public Connection::Channel {
 public:
  ForwardChannel(Connection& c, ssh_channel ch, int sock) : Channel(c), ch_(ch), sock_(sock) {
    ssh_callbacks_init(&cb_);
    cb_.userdata = this;
    cb_.channel_data_function = [](ssh_session, ssh_channel, void* d, uint32_t len, int, void* u) {
      return static_cast<ForwardChannel*>(u)->relay_->onChannelData(static_cast<const char*>(d),
                                                                    len);
    };
    cb_.channel_eof_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<ForwardChannel*>(u)->relay_->onChannelEof();
    };
    cb_.channel_close_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<ForwardChannel*>(u)->closed_by_peer_ = true;
    };
    cb_.channel_write_wontblock_function = [](ssh_session, ssh_channel, uint32_t, void* u) {
      static_cast<ForwardChannel*>(u)->relay_->onWindowOpened();
      return 0;
    };
    ssh_set_channel_callbacks(ch_, &cb_);
    relay_ = std::make_unique<Relay>(c, ch_, sock_, -1, sock_);
  }
  ~ForwardChannel() override {
    relay_.reset();
    if (ch_ != nullptr) {
      ssh_remove_channel_callbacks(ch_, &cb_);
      ssh_channel_free(ch_);
    }
  }
  bool poll() override {
    relay_->onWindowOpened();
    if (!eof_sent_ && relay_->outputDone()) {
      eof_sent_ = true;
      if (!ssh_channel_is_closed(ch_)) ssh_channel_send_eof(ch_);
    }
    if (eof_sent_ && ssh_channel_is_eof(ch_) && !closing_) closing_ = true;
    if (closed_by_peer_) closing_ = true;
    if (closing_ && !close_sent_) {
      relay_->closeFds();
      close_sent_ = ssh_channel_is_closed(ch_) || ssh_channel_close(ch_) != SSH_AGAIN;
    }
    return !(close_sent_ && closed_by_peer_) && !(close_sent_ && ssh_channel_is_closed(ch_));
  }
  void forceClose() override {
    if (!ssh_channel_is_closed(ch_)) ssh_channel_close(ch_);
    closed_by_peer_ = true;
  }

 private:
  ssh_channel ch_;
  int sock_;
  struct ssh_channel_callbacks_struct cb_ {};
  std::unique_ptr<Relay> relay_;
  bool eof_sent_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool closed_by_peer_ = false;
};

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(SshServer::Impl& server, ssh_bind bind, int fd, std::string peer,
                       uint64_t id, bool require_auth)
    : server_(server),
      bind_(bind),
      fd_(fd),
      peer_(std::move(peer)),
      id_(id),
      require_auth_(require_auth) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    char host[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      peer_port_ = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      peer_port_ = ntohs(a->sin6_port);
    }
    peer_ip_ = host;
  }
  if (peer_ip_.empty()) {
    // Not an IP socket (an overlay connection bridged through a socketpair): the peer string
    // is the overlay address, "ip:port" or "[ip6]:port".
    if (auto a = net::parseListenAddress(peer_); a && !a->is_unix && !a->host.empty()) {
      peer_ip_ = a->host;
      peer_port_ = a->port;
    } else {
      peer_ip_ = "127.0.0.1";
    }
  }
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Connection::~Connection() {
  channels_.clear();
  for (auto& [fd, addr] : listeners_) ::close(fd);
  if (agent_listener_ >= 0) ::close(agent_listener_);
  if (x11_listener_ >= 0) ::close(x11_listener_);
  for (auto& p : pending_opens_) {
    ssh_channel_free(p.ch);
    ::close(p.sock);
  }
  if (!agent_socket_dir_.empty()) {
    ::unlink(agent_socket_.c_str());
    ::rmdir(agent_socket_dir_.c_str());
  }
  if (event_ != nullptr) {
    // ssh_event_free does not free the handles ssh_event_add_fd allocated.
    for (auto& [fd, ev] : registered_) ssh_event_remove_fd(event_, fd);
    registered_.clear();
    ssh_event_free(event_);
  }
  if (session_ != nullptr) ssh_free(session_);
  for (int fd : to_close_) ::close(fd);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Connection::requestClose() {
  close_requested_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

std::vector<pid_t> Connection::liveGroups() const {
  std::lock_guard l(groups_mu_);
  return groups_;
}

void Connection::watch(int fd, short events, std::function<void(int)> handler) {
  if (fd < 0) return;
  if (events == 0) {
    desired_.erase(fd);
  } else {
    desired_[fd] = Watch{events, std::move(handler)};
  }
}

void Connection::closeLater(int fd) {
  if (fd >= 0) to_close_.push_back(fd);
}

void Connection::syncWatches() {
  for (auto it = registered_.begin(); it != registered_.end();) {
    auto d = desired_.find(it->first);
    if (d == desired_.end() || d->second.events != it->second) {
      ssh_event_remove_fd(event_, it->first);
      it = registered_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [fd, w] : desired_) {
    if (registered_.count(fd) > 0) continue;
    if (ssh_event_add_fd(event_, fd, w.events, &Connection::onFd, this) == SSH_OK) {
      registered_[fd] = w.events;
    }
  }
  for (int fd : to_close_) {
    if (registered_.count(fd) > 0) {
      ssh_event_remove_fd(event_, fd);
      registered_.erase(fd);
    }
    desired_.erase(fd);
    ::close(fd);
  }
  to_close_.clear();
}

int Connection::onFd(socket_t fd, int revents, void* self) {
  auto* c = static_cast<Connection*>(self);
  auto it = c->desired_.find(fd);
  if (it == c->desired_.end()) return 0;
  auto handler = it->second.handler;  // the handler may change watches
  if (handler) handler(revents);
  return 0;
}

int Connection::authPubkey(const char* user, ssh_key key, char state) {
  const auto& keys = server_.authorizedKeys();
  if (!keys || !keys->contains(key)) return SSH_AUTH_DENIED;
  if (state == SSH_PUBLICKEY_STATE_NONE) return SSH_AUTH_SUCCESS;  // the probe
  if (state == SSH_PUBLICKEY_STATE_VALID) {
    authenticated_ = true;
    user_ = user != nullptr ? user : "";
    return SSH_AUTH_SUCCESS;
  }
  return SSH_AUTH_DENIED;
}

ssh_channel Connection::openSession() {
  if (close_requested_) return nullptr;
  auto ch = std::make_unique<SessionChannel>(*this);
  ssh_channel raw = ch->channel();
  channels_.push_back(std::move(ch));
  return raw;
}

int Connection::onMessage(ssh_session, ssh_message msg, void* self) {
  auto* c = static_cast<Connection*>(self);
  int type = ssh_message_type(msg);
  if (type == SSH_REQUEST_CHANNEL_OPEN) return c->handleChannelOpen(msg) ? 0 : 1;
  if (type == SSH_REQUEST_GLOBAL) return c->handleGlobal(msg) ? 0 : 1;
  return 1;  // let libssh answer with its default
}

bool Connection::handleChannelOpen(ssh_message msg) {
  if (ssh_message_subtype(msg) != SSH_CHANNEL_DIRECT_TCPIP) return false;
  if (server_.options().block_local_port_forwarding || close_requested_) {
    ssh_message_reply_default(msg);  // "administratively prohibited"
    return true;
  }
  std::string host = ssh_message_channel_request_open_destination(msg);
  int port = ssh_message_channel_request_open_destination_port(msg);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  // Resolution blocks this connection's thread only (not the agent, not other connections).
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    ssh_message_reply_default(msg);
    return true;
  }
  int sock = -1;
  for (addrinfo* a = res; a != nullptr && sock < 0; a = a->ai_next) {
    int s = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (s < 0) continue;
    // A bounded, blocking connect: local targets answer at once.
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (::connect(s, a->ai_addr, a->ai_addrlen) == 0) {
      sock = s;
    } else {
      ::close(s);
    }
  }
  ::freeaddrinfo(res);
  if (sock < 0) {
    ssh_message_reply_default(msg);
    return true;
  }
  int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setNonBlocking(sock);
  ssh_channel ch = ssh_message_channel_request_open_reply_accept(msg);
  if (ch == nullptr) {
    ::close(sock);
    return true;
  }
  channels_.push_back(std::make_unique<ForwardChannel>(*this, ch, sock));
  return true;
}

bool Connection::handleGlobal(ssh_message msg) {
  int sub = ssh_message_subtype(msg);
  if (sub == SSH_GLOBAL_REQUEST_TCPIP_FORWARD) {
    if (server_.options().block_reverse_port_forwarding || close_requested_) {
      ssh_message_reply_default(msg);
      return true;
    }
    std::string addr = ssh_message_global_request_address(msg);
    int port = ssh_message_global_request_port(msg);
    std::string bind_host = (addr.empty() || addr == "localhost") ? "127.0.0.1" : addr;
    if (addr == "0.0.0.0" || addr == "*") bind_host = "0.0.0.0";
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    addrinfo* res = nullptr;
    if (::getaddrinfo(bind_host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) {
      ssh_message_reply_default(msg);
      return true;
    }
    int s = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bool ok = s >= 0 && ::bind(s, res->ai_addr, res->ai_addrlen) == 0 && ::listen(s, 64) == 0;
    ::freeaddrinfo(res);
    if (!ok) {
      if (s >= 0) ::close(s);
      ssh_message_reply_default(msg);
      return true;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len);
    int bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                         : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    listeners_[s] = addr + ":" + std::to_string(port) + "|" + std::to_string(bound);
    watch(s, POLLIN, [this, s](int) { acceptForwarded(s); });
    ssh_message_global_request_reply_success(msg, static_cast<uint16_t>(bound));
    return true;
  }
  if (sub == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD) {
    std::string addr = ssh_message_global_request_address(msg);
    int port = ssh_message_global_request_port(msg);
    std::string prefix = addr + ":" + std::to_string(port) + "|";
    for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
      if (it->second.rfind(prefix, 0) == 0) {
        watch(it->first, 0, nullptr);
        closeLater(it->first);
        listeners_.erase(it);
        ssh_message_global_request_reply_success(msg, 0);
        return true;
      }
    }
    ssh_message_reply_default(msg);
    return true;
  }
  return false;
}

void Connection::acceptForwarded(int listen_fd) {
  auto it = listeners_.find(listen_fd);
  if (it == listeners_.end()) return;
  while (true) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int s =
        ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (s < 0) return;
    char host[INET6_ADDRSTRLEN] = "127.0.0.1";
    int oport = 0;
    if (ss.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host, sizeof(host));
      oport = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, host, sizeof(host));
      oport = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
    const std::string& spec = it->second;
    std::string addr = spec.substr(0, spec.rfind(':'));
    int port = std::stoi(spec.substr(spec.rfind(':') + 1, spec.find('|') - spec.rfind(':') - 1));
    pending_opens_.push_back(PendingOpen{PendingOpen::kForwardedTcpip, ssh_channel_new(session_), s,
                                         addr, port, host, oport});
  }
}

void Connection::drivePendingOpens() {
  for (auto it = pending_opens_.begin(); it != pending_opens_.end();) {
    int rc = SSH_ERROR;
    switch (it->kind) {
      case PendingOpen::kForwardedTcpip:
        rc = ssh_channel_open_reverse_forward(it->ch, it->addr.c_str(), it->port, it->orig.c_str(),
                                              it->orig_port);
        break;
      case PendingOpen::kAuthAgent:
        rc = ssh_channel_open_auth_agent(it->ch);
        break;
      case PendingOpen::kX11:
        rc = ssh_channel_open_x11(it->ch, it->orig.c_str(), it->orig_port);
        break;
    }
    if (rc == SSH_AGAIN) {
      ++it;
      continue;
    }
    if (rc == SSH_OK) {
      channels_.push_back(std::make_unique<ForwardChannel>(*this, it->ch, it->sock));
    } else {
      ssh_channel_free(it->ch);
      ::close(it->sock);
    }
    it = pending_opens_.erase(it);
  }
}

void Connection::sendKeepalive() {
  ssh_send_keepalive(session_);
}

int Connection::listenUnix(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    ::close(s);
    return -1;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(s, 64) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

void Connection::enableAgentForwarding() {
  if (server_.options().block_agent_forwarding || !agent_socket_.empty()) return;
  char tmpl[] = "/tmp/wsa-ssh-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  agent_socket_dir_ = tmpl;
  agent_socket_ =
      agent_socket_dir_ + "/agent." + std::to_string(::getpid()) + "." + std::to_string(id_);
  int s = listenUnix(agent_socket_);
  if (s < 0) {
    server_.log()->warn("ssh: agent forwarding: cannot listen on {}", agent_socket_);
    ::rmdir(agent_socket_dir_.c_str());
    agent_socket_.clear();
    agent_socket_dir_.clear();
    return;
  }
  ::chmod(agent_socket_.c_str(), 0600);
  agent_listener_ = s;
  watch(s, POLLIN, [this, s](int) {
    while (true) {
      int c = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) return;
      pending_opens_.push_back(
          PendingOpen{PendingOpen::kAuthAgent, ssh_channel_new(session_), c, "", 0, "", 0});
    }
  });
}

void Connection::enableX11(bool single, const std::string& proto, const std::string& cookie,
                           uint32_t screen) {
  (void)single;
  if (server_.options().block_x11_forwarding || !x11_display_.empty()) return;
  // Display numbers 10..209 on 127.0.0.1:6010..6209, as OpenSSH's X11DisplayOffset.
  int listener = -1;
  int display = -1;
  for (int d = 10; d < 210 && listener < 0; ++d) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(6000 + d));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 && ::listen(s, 16) == 0) {
      listener = s;
      display = d;
    } else {
      ::close(s);
    }
  }
  if (listener < 0) {
    server_.log()->warn("ssh: X11 forwarding: no free display between 10 and 209");
    return;
  }
  // The xauth entry lets X clients in the session authenticate with the client's cookie.
  std::string disp = std::to_string(display) + "." + std::to_string(screen);
  auto ctx = server_.contextSnapshot();
  std::string xauth = "/usr/bin/xauth";
  if (::access(xauth.c_str(), X_OK) == 0 && !proto.empty() && !cookie.empty()) {
    std::string cmd =
        "remove unix:" + disp + "\nadd unix:" + disp + " " + proto + " " + cookie + "\n";
    int in[2];
    if (::pipe2(in, O_CLOEXEC) == 0) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::dup2(in[0], 0);
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        if (ctx) {
          ::setenv("HOME", ctx->command->user.home.c_str(), 1);
          if (::chdir(ctx->command->user.home.c_str()) != 0) _exit(1);
        }
        ::execl(xauth.c_str(), "xauth", "-q", "-", static_cast<char*>(nullptr));
        _exit(127);
      }
      ::close(in[0]);
      (void)!::write(in[1], cmd.data(), cmd.size());
      ::close(in[1]);
      if (pid > 0) ::waitpid(pid, nullptr, 0);
    }
  }
  x11_display_ = "localhost:" + disp;
  x11_listener_ = listener;
  watch(listener, POLLIN, [this, listener](int) {
    while (true) {
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      int c = ::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len,
                        SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) return;
      char host[INET_ADDRSTRLEN] = "127.0.0.1";
      ::inet_ntop(AF_INET, &peer.sin_addr, host, sizeof(host));
      pending_opens_.push_back(PendingOpen{PendingOpen::kX11, ssh_channel_new(session_), c, "", 0,
                                           host, ntohs(peer.sin_port)});
    }
  });
}

void Connection::run() {
  auto log = server_.log();
  session_ = ssh_new();
  long timeout_s = 30;
  ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &timeout_s);
  if (server_.acceptFd(bind_, session_, fd_) != SSH_OK) {
    log->warn("ssh: accepting {} failed: {}", peer_, ssh_get_error(bind_));
    server_.counters().failed_connections++;
    finished_ = true;
    return;
  }
  ssh_callbacks_init(&server_cb_);
  server_cb_.userdata = this;
  server_cb_.auth_none_function = [](ssh_session, const char* user, void* u) {
    auto* c = static_cast<Connection*>(u);
    if (c->require_auth_) return static_cast<int>(SSH_AUTH_DENIED);
    c->authenticated_ = true;
    c->user_ = user != nullptr ? user : "";
    return static_cast<int>(SSH_AUTH_SUCCESS);
  };
  server_cb_.auth_pubkey_function = [](ssh_session, const char* user, struct ssh_key_struct* key,
                                       char state, void* u) {
    return static_cast<Connection*>(u)->authPubkey(user, key, state);
  };
  server_cb_.channel_open_request_session_function = [](ssh_session, void* u) {
    return static_cast<Connection*>(u)->openSession();
  };
  ssh_set_server_callbacks(session_, &server_cb_);
  ssh_set_message_callback(session_, &Connection::onMessage, this);
  if (ssh_handle_key_exchange(session_) != SSH_OK) {
    log->info("ssh: key exchange with {} failed: {}", peer_, ssh_get_error(session_));
    server_.counters().failed_connections++;
    finished_ = true;
    return;
  }
  ssh_set_auth_methods(session_, require_auth_
                                     ? SSH_AUTH_METHOD_PUBLICKEY
                                     : (SSH_AUTH_METHOD_NONE | SSH_AUTH_METHOD_PUBLICKEY));
  event_ = ssh_event_new();
  ssh_event_add_session(event_, session_);
  ssh_set_blocking(session_, 0);
  watch(wake_fd_, POLLIN, [this](int) {
    uint64_t v;
    (void)!::read(wake_fd_, &v, sizeof(v));
  });
  syncWatches();
  auto keepalive_every =
      std::chrono::duration_cast<std::chrono::milliseconds>(server_.options().max_timeout / 3);
  auto next_keepalive = std::chrono::steady_clock::now() + keepalive_every;
  bool closing = false;
  auto close_deadline = std::chrono::steady_clock::time_point::max();
  while (true) {
    int rc = ssh_event_dopoll(event_, 200);
    drivePendingOpens();
    for (auto it = channels_.begin(); it != channels_.end();) {
      it = (*it)->poll() ? std::next(it) : channels_.erase(it);
    }
    syncWatches();
    int status = ssh_get_status(session_);
    if (rc == SSH_ERROR || (status & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) break;
    if (close_requested_ && !closing) {
      closing = true;
      close_deadline = std::chrono::steady_clock::now() + server_.options().shutdown_grace;
      for (auto& ch : channels_) ch->forceClose();
    }
    if (closing && (channels_.empty() || std::chrono::steady_clock::now() > close_deadline)) break;
    auto now = std::chrono::steady_clock::now();
    if (keepalive_every.count() > 0 && now >= next_keepalive) {
      sendKeepalive();
      next_keepalive = now + keepalive_every;
    }
  }
  for (auto& ch : channels_) ch->forceClose();
  channels_.clear();
  syncWatches();
  ssh_disconnect(session_);
  finished_ = true;
}

}  // namespace wsa::ssh
