#include "wsa/exec/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>

#include "wsa/common/strings.h"

namespace wsa::exec {

std::string ExitStatus::text() const {
  if (code >= 0) return "exit status " + std::to_string(code);
  const char* name = ::sigdescr_np(signal);
  return std::string("signal: ") + (name != nullptr ? toLower(name) : std::to_string(signal));
}

namespace {

class ProcessImpl final : public Process, public std::enable_shared_from_this<ProcessImpl> {
 public:
  ProcessImpl(asio::io_context& io, pid_t pid, int pidfd, int out_fd, int err_fd, Callbacks cb)
      : pid_(pid), pidfd_(io, pidfd), out_(io, out_fd), cb_(std::move(cb)) {
    if (err_fd >= 0) err_.emplace(io, err_fd);
  }
  ~ProcessImpl() override {
    std::error_code ec;
    pidfd_.close(ec);
    out_.close(ec);
    if (err_) err_->close(ec);
    if (!exited_) {
      // Never leave a zombie: if we are dropped before the exit, reap it (blocking only if
      // the caller killed it already).
      ::waitpid(pid_, nullptr, WNOHANG);
    }
  }

  void begin() {
    read(false);
    if (err_) read(true);
    waitExit();
  }

  pid_t pid() const override { return pid_; }
  bool exited() const override { return exited_; }
  void signalGroup(int sig) override {
    if (!exited_ || group_may_live_) ::kill(-pid_, sig);
  }
  void closePipes() override {
    // Cancel the pending reads; each read handler then delivers what it already has, drains
    // the rest in order, closes its pipe and reports EOF.
    std::error_code ec;
    if (out_.is_open() && !out_closing_) {
      out_closing_ = true;
      out_.cancel(ec);
    }
    if (err_ && err_->is_open() && !err_closing_) {
      err_closing_ = true;
      err_->cancel(ec);
    }
  }

 private:
  // Reads what is available now, without blocking, and hands it on (bounded: at most 16 MiB, so
  // a writer that keeps filling the pipe cannot hold us here).
  void drain(int fd, bool is_err) {
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    char buf[kBuf];
    size_t total = 0;
    while (total < (16u << 20)) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      total += static_cast<size_t>(n);
      auto& fn = is_err ? cb_.on_stderr : cb_.on_stdout;
      if (fn) fn(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  void finishPipe(bool is_err) {
    auto& d = is_err ? *err_ : out_;
    if (d.is_open()) {
      drain(d.native_handle(), is_err);
      std::error_code ec;
      d.close(ec);
    }
    eof(is_err);
  }
  void read(bool is_err) {
    auto& d = is_err ? *err_ : out_;
    char* buf = is_err ? err_buf_ : out_buf_;
    d.async_read_some(asio::buffer(buf, kBuf),
                      [self = shared_from_this(), is_err, buf](std::error_code ec, size_t n) {
                        if (n > 0) {
                          auto& fn = is_err ? self->cb_.on_stderr : self->cb_.on_stdout;
                          if (fn) fn(std::string_view(buf, n));
                        }
                        bool closing = is_err ? self->err_closing_ : self->out_closing_;
                        if (closing) {
                          self->finishPipe(is_err);
                          return;
                        }
                        if (ec) {
                          if (ec != asio::error::operation_aborted) self->eof(is_err);
                          return;
                        }
                        self->read(is_err);
                      });
  }
  void eof(bool is_err) {
    bool& flag = is_err ? err_eof_ : out_eof_;
    if (flag) return;
    flag = true;
    if (cb_.on_eof) cb_.on_eof(is_err);
  }
  void waitExit() {
    pidfd_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [self = shared_from_this()](std::error_code ec) {
                        if (ec == asio::error::operation_aborted) return;
                        int st = 0;
                        pid_t r = ::waitpid(self->pid_, &st, WNOHANG);
                        if (r == 0) {
                          self->waitExit();
                          return;
                        }
                        ExitStatus es;
                        if (r == self->pid_) {
                          if (WIFEXITED(st)) {
                            es.code = WEXITSTATUS(st);
                          } else if (WIFSIGNALED(st)) {
                            es.signal = WTERMSIG(st);
                          }
                        }
                        self->exited_ = true;
                        // Descendants may still run in the group (background children).
                        self->group_may_live_ = true;
                        if (self->cb_.on_exit) self->cb_.on_exit(es);
                      });
  }

  static constexpr size_t kBuf = 16384;
  pid_t pid_;
  asio::posix::stream_descriptor pidfd_;
  asio::posix::stream_descriptor out_;
  std::optional<asio::posix::stream_descriptor> err_;
  Callbacks cb_;
  char out_buf_[kBuf];
  char err_buf_[kBuf];
  bool exited_ = false;
  bool group_may_live_ = false;
  bool out_eof_ = false;
  bool err_eof_ = false;
  bool out_closing_ = false;
  bool err_closing_ = false;
};

}  // namespace

Result<std::shared_ptr<Process>> spawnProcess(asio::io_context& io, const Command& cmd,
                                              Process::Callbacks callbacks) {
  if (cmd.argv.empty()) return makeError("empty command");
  std::string program = resolveProgram(cmd.argv[0], cmd.env);
  // Everything the child needs is prepared before fork: it only makes system calls.
  ExecArgs exec_args(cmd.argv, cmd.env);
  std::string oom_text =
      cmd.priority.oom_score_adj ? std::to_string(*cmd.priority.oom_score_adj) : "";

  int out[2], err[2] = {-1, -1}, status[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return makeError(std::string("pipe: ") + std::strerror(errno));
  if (!cmd.merge_stderr && ::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return makeError(std::string("pipe: ") + std::strerror(errno));
  }
  if (::pipe2(status, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    if (err[0] >= 0) {
      ::close(err[0]);
      ::close(err[1]);
    }
    return makeError(std::string("pipe: ") + std::strerror(errno));
  }
  pid_t pid = forkForExec();
  if (pid < 0) {
    int e = errno;
    for (int fd : {out[0], out[1], err[0], err[1], status[0], status[1]}) {
      if (fd >= 0) ::close(fd);
    }
    return makeError(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    ::setsid();
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(cmd.merge_stderr ? out[1] : err[1], 2);
    execInChild(program, exec_args.argv.data(), exec_args.envp.data(), cmd.priority, oom_text,
                cmd.cwd, status[1]);
  }
  ::close(out[1]);
  if (err[1] >= 0) ::close(err[1]);
  ::close(status[1]);
  if (int child_errno = awaitExec(status[0]); child_errno != 0) {
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    if (err[0] >= 0) ::close(err[0]);
    return makeError("cannot start " + program + (cmd.cwd.empty() ? "" : " in " + cmd.cwd) + ": " +
                     std::strerror(child_errno));
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    if (err[0] >= 0) ::close(err[0]);
    return makeError(std::string("pidfd_open: ") + std::strerror(errno));
  }
  auto p = std::make_shared<ProcessImpl>(io, pid, pidfd, out[0], err[0], std::move(callbacks));
  p->begin();
  return std::shared_ptr<Process>(p);
}

}  // namespace wsa::exec
