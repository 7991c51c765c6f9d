// "session" channels: shell, exec and subsystem (sftp) requests, PTYs and window changes,
// environment requests, signals, the login greeting, exit status and accounting.

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "ssh/channel.h"
#include "ssh/connection.h"
#include "ssh/relay.h"
#include "ssh/server_impl.h"
#include "wsa/common/fs.h"
#include "wsa/common/strings.h"
#include "wsa/exec/command.h"

namespace wsa::ssh {

namespace {

constexpr int kBlockedFileTransferCode = 65;
constexpr int kInternalErrorCode = 229;
constexpr size_t kMaxEnvRequests = 256;

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

ssh_channel Connection::openSession() {
  if (close_requested_) return nullptr;
  auto ch = std::make_unique<SessionChannel>(*this);
  ssh_channel raw = ch->channel();
  channels_.push_back(std::move(ch));
  return raw;
}

}  // namespace wsa::ssh
