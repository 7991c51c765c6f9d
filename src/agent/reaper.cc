#include "agent/reaper.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace wsa::agent {

int maybeRunReaper(int argc, char** argv, bool no_reap) {
  if (no_reap || ::getpid() != 1) return -1;
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) {
    sigaddset(&set, s);
  }
  sigprocmask(SIG_BLOCK, &set, nullptr);
  // Said before the fork, so it precedes anything the agent logs.
  std::fprintf(stderr, "wsa-agent: running as PID 1: reaping zombies and forwarding signals\n");
  pid_t child = ::fork();
  if (child < 0) {
    std::fprintf(stderr, "wsa-agent: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    std::vector<char*> args(argv, argv + argc);
    static char no_reap_flag[] = "--no-reap";
    args.push_back(no_reap_flag);
    args.push_back(nullptr);
    ::execv("/proc/self/exe", args.data());
    ::execv(argv[0], args.data());
    std::fprintf(stderr, "wsa-agent: re-exec: %s\n", std::strerror(errno));
    _exit(127);
  }
  while (true) {
    siginfo_t info{};
    int sig = ::sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      ::kill(child, sig);
      continue;
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == child) {
        // Reap what is left, then leave with the agent's code.
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
      }
    }
  }
}

}  // namespace wsa::agent
