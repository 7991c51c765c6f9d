#include "wsa/term/child.h"

#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wsa::term {

void setWindowSize(int master, const PtySize& s) {
  struct winsize ws {};
  ws.ws_row = static_cast<unsigned short>(s.rows);
  ws.ws_col = static_cast<unsigned short>(s.cols);
  ws.ws_xpixel = static_cast<unsigned short>(s.xpixels);
  ws.ws_ypixel = static_cast<unsigned short>(s.ypixels);
  ::ioctl(master, TIOCSWINSZ, &ws);
}

namespace {

void setNonBlocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}
void setCloexec(int fd) {
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

}  // namespace

Result<Child> spawnChild(const ChildSpec& spec) {
  if (spec.argv.empty()) return makeError("empty command");
  std::string program = exec::resolveProgram(spec.argv[0], spec.env);
  std::vector<std::string> args = spec.argv;
  if (!spec.argv0.empty()) args[0] = spec.argv0;
  std::vector<std::string> envs = spec.env;
  std::string oom = spec.priority.oom_score_adj ? std::to_string(*spec.priority.oom_score_adj) : "";

  int status[2];
  if (::pipe2(status, O_CLOEXEC) != 0)
    return makeError(std::string("pipe: ") + std::strerror(errno));
  Child c;
  pid_t pid;
  if (spec.pty) {
    // openpty first so the terminal's name is known before fork (SSH_TTY).
    int master = -1;
    int slave = -1;
    struct winsize ws {};
    ws.ws_row = static_cast<unsigned short>(spec.size.rows);
    ws.ws_col = static_cast<unsigned short>(spec.size.cols);
    ws.ws_xpixel = static_cast<unsigned short>(spec.size.xpixels);
    ws.ws_ypixel = static_cast<unsigned short>(spec.size.ypixels);
    char name[128] = {0};
    if (::openpty(&master, &slave, name, nullptr, &ws) != 0) {
      ::close(status[0]);
      ::close(status[1]);
      return makeError(std::string("openpty: ") + std::strerror(errno));
    }
    setCloexec(master);
    setCloexec(slave);
    for (auto& e : envs) {
      if (e == "SSH_TTY=") e = std::string("SSH_TTY=") + name;
    }
    exec::ExecArgs exec_args(args, envs);
    pid = exec::forkForExec();
    if (pid == 0) {
      ::setsid();
      ::ioctl(slave, TIOCSCTTY, 0);
      ::dup2(slave, 0);
      ::dup2(slave, 1);
      ::dup2(slave, 2);
      exec::execInChild(program, exec_args.argv.data(), exec_args.envp.data(), spec.priority, oom,
                        spec.cwd, status[1]);
    }
    ::close(slave);
    if (pid > 0) {
      c.master = master;
      c.tty_name = name;
      setNonBlocking(master);
    } else {
      ::close(master);
    }
  } else {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      ::close(status[0]);
      ::close(status[1]);
      return makeError(std::string("pipe: ") + std::strerror(errno));
    }
    exec::ExecArgs exec_args(args, envs);
    pid = exec::forkForExec();
    if (pid == 0) {
      ::setsid();
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      exec::execInChild(program, exec_args.argv.data(), exec_args.envp.data(), spec.priority, oom,
                        spec.cwd, status[1]);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    if (pid > 0) {
      c.stdin_fd = in[1];
      c.stdout_fd = out[0];
      c.stderr_fd = err[0];
      setNonBlocking(c.stdin_fd);
      setNonBlocking(c.stdout_fd);
      setNonBlocking(c.stderr_fd);
    } else {
      ::close(in[1]);
      ::close(out[0]);
      ::close(err[0]);
    }
  }
  ::close(status[1]);
  if (pid < 0) {
    int e = errno;
    ::close(status[0]);
    return makeError(std::string("fork: ") + std::strerror(e));
  }
  c.pid = pid;
  if (int child_errno = exec::awaitExec(status[0]); child_errno != 0) {
    ::waitpid(pid, nullptr, 0);
    for (int fd : {c.master, c.stdin_fd, c.stdout_fd, c.stderr_fd}) {
      if (fd >= 0) ::close(fd);
    }
    return makeError(program + ": " + std::strerror(child_errno));
  }
  c.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  return c;
}

ChildSpec childSpec(const exec::BuiltCommand& cmd) {
  ChildSpec spec;
  spec.argv = cmd.argv;
  spec.argv0 = cmd.argv0;
  spec.env = cmd.envList();
  spec.cwd = cmd.cwd;
  spec.priority = cmd.priority;
  return spec;
}

}  // namespace wsa::term
