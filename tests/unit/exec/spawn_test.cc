// forkForExec + execInChild: a signal sent to a child before it has exec'd acts on it as on the
// program it becomes, not through a handler inherited from the agent.

#include "wsa/exec/spawn.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace wsa::exec {
namespace {

volatile sig_atomic_t g_handled = 0;
void onHup(int) {
  g_handled = 1;
}

// `disposition`: what the agent has for SIGHUP when it forks (it ignores SIGHUP; it handles
// SIGTERM and SIGINT through Asio, which installs handlers).
void expectEarlySighupEndsTheChild(void (*disposition)(int)) {
  g_handled = 0;
  struct sigaction sa {};
  sa.sa_handler = disposition;
  sigemptyset(&sa.sa_mask);
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGHUP, &sa, &old), 0);

  int status_pipe[2];
  ASSERT_EQ(::pipe2(status_pipe, O_CLOEXEC), 0);
  ExecArgs args({"/bin/sleep", "30"}, {"PATH=/usr/bin:/bin"});
  pid_t pid = forkForExec();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Dawdle before exec, as a loaded machine does, so that the signal arrives first.
    timespec ts{0, 300 * 1000 * 1000};
    ::nanosleep(&ts, nullptr);
    execInChild("/bin/sleep", args.argv.data(), args.envp.data(), {}, "", "", status_pipe[1]);
  }
  ::close(status_pipe[1]);
  ASSERT_EQ(::kill(pid, SIGHUP), 0);  // long before the child execs
  // The child ends by SIGHUP (its default action), well before sleep's 30 s: wait for its
  // exit on a pidfd, with a deadline.
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(pfd, 0);
  pollfd p{pfd, POLLIN, 0};
  int ready = ::poll(&p, 1, 10000);
  ::close(pfd);
  int status = 0;
  pid_t got = ready == 1 ? ::waitpid(pid, &status, 0) : 0;
  if (got == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ::close(status_pipe[0]);
  ::sigaction(SIGHUP, &old, nullptr);
  ASSERT_EQ(got, pid) << "the child outlived the SIGHUP sent before its exec";
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGHUP);
  EXPECT_EQ(g_handled, 0);  // and the parent's handler never ran for it
}

TEST(ExecTest, ASignalSentBeforeExecIsNotLostToAnInheritedHandler) {
  expectEarlySighupEndsTheChild(onHup);
}

TEST(ExecTest, ASignalSentBeforeExecIsNotLostToAnInheritedIgnore) {
  expectEarlySighupEndsTheChild(SIG_IGN);
}

}  // namespace
}  // namespace wsa::exec
