#pragma once
// Child processes for SSH sessions: with a PTY (forkpty) or with pipes. Everything is prepared
// before fork; the child only makes system calls. Used from session threads (no event loop):
// the caller polls the returned descriptors.

#include <sys/types.h>

#include <string>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/exec/command.h"
#include "wsa/exec/spawn.h"

namespace wsa::term {

struct PtySize {
  int rows = 24;
  int cols = 80;
  int xpixels = 0;
  int ypixels = 0;
};

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is the program (resolved via PATH of env)
  std::string argv0;              // what the program sees as argv[0] (e.g. "-bash"); empty: argv[0]
  std::vector<std::string> env;
  std::string cwd;
  bool pty = false;
  PtySize size;
  exec::ChildPriority priority;
};

struct Child {
  pid_t pid = -1;
  int pidfd = -1;
  // PTY: master is both input and output. Pipes: stdin_fd, stdout_fd, stderr_fd.
  int master = -1;
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::string tty_name;
};

// The spec for a command exec::buildCommand put together (argv, argv0, environment, directory,
// priority); `pty` and `size` are left for the caller.
ChildSpec childSpec(const exec::BuiltCommand& cmd);
Result<Child> spawnChild(const ChildSpec& spec);
void setWindowSize(int master, const PtySize& size);

}  // namespace wsa::term
