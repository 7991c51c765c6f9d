#include "wsa/exec/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "wsa/common/fs.h"
#include "wsa/common/strings.h"

namespace wsa::exec {

ChildPriority computeChildPriority(std::optional<int> explicit_oom,
                                   std::optional<int> explicit_nice) {
  ChildPriority p;
  if (explicit_oom) {
    p.oom_score_adj = *explicit_oom;
  } else {
    int own = 0;
    std::ifstream f("/proc/self/oom_score_adj");
    if (f >> own) {
      p.oom_score_adj = own < 0 ? 0 : (own >= 998 ? 1000 : 998);
    }
  }
  if (explicit_nice) {
    p.nice = *explicit_nice;
  } else {
    errno = 0;
    int own = ::getpriority(PRIO_PROCESS, 0);
    if (errno == 0) p.nice = std::min(own + 5, 19);
  }
  return p;
}

ExecArgs::ExecArgs(std::vector<std::string> a, std::vector<std::string> e)
    : args(std::move(a)), env(std::move(e)) {
  for (auto& x : args) argv.push_back(x.data());
  argv.push_back(nullptr);
  for (auto& x : env) envp.push_back(x.data());
  envp.push_back(nullptr);
}

int awaitExec(int status_fd) {
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(status_fd, &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(status_fd);
  return n == static_cast<ssize_t>(sizeof(child_errno)) ? child_errno : 0;
}

pid_t forkForExec() {
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid != 0) ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return pid;
}

void execInChild(const std::string& program, char** argv, char** envp,
                 const ChildPriority& priority, const std::string& oom_text, const std::string& cwd,
                 int status_fd) {
  // Dispositions first, then the mask (forkForExec blocked everything): a signal that arrived
  // in between is delivered now, with its default action.
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (!oom_text.empty()) {
    int fd = ::open("/proc/self/oom_score_adj", O_WRONLY);
    if (fd >= 0) {
      (void)!::write(fd, oom_text.data(), oom_text.size());
      ::close(fd);
    }
  }
  if (priority.nice) ::setpriority(PRIO_PROCESS, 0, *priority.nice);
  if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
    int e = errno;
    (void)!::write(status_fd, &e, sizeof(e));
    _exit(127);
  }
  // Nothing of the agent's leaks into the child (sockets, other pipes); the status pipe stays
  // until exec (it is close-on-exec) to report an exec failure.
  auto keep = static_cast<unsigned>(status_fd);
  if (keep > 3) ::syscall(SYS_close_range, 3u, keep - 1, 0u);
  ::syscall(SYS_close_range, keep + 1, ~0u, 0u);
  ::execve(program.c_str(), argv, envp);
  int e = errno;
  (void)!::write(status_fd, &e, sizeof(e));
  _exit(127);
}

std::string resolveProgram(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path;
  for (const auto& kv : env) {
    if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
  }
  if (path.empty()) {
    const char* p = std::getenv("PATH");
    path = p != nullptr ? p : "/usr/local/bin:/usr/bin:/bin";
  }
  for (const auto& dir : split(path, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && !isDirectory(candidate)) return candidate;
  }
  return name;
}

}  // namespace wsa::exec
