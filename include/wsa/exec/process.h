#pragma once
// Child processes driven from the event loop: fork+exec into a new session (own process group),
// stdout/stderr read asynchronously, exit noticed through a pidfd. Used by scripts and metadata.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/exec/spawn.h"

namespace asio {
class io_context;
}

namespace wsa::exec {

struct Command {
  std::vector<std::string> argv;  // argv[0] resolved through PATH of `env` if not absolute
  std::vector<std::string> env;   // the complete environment, "KEY=VALUE"
  std::string cwd;                // empty: inherit
  bool merge_stderr = false;      // stderr into the stdout pipe
  ChildPriority priority;
};

struct ExitStatus {
  int code = -1;   // exit code, or -1 when killed by a signal
  int signal = 0;  // the signal, if any
  // 255 for signals and unknown, as the reference reports them.
  int reportedCode() const { return code >= 0 ? code : 255; }
  std::string text() const;  // "exit status 3", "signal: killed"
};

class Process {
 public:
  struct Callbacks {
    std::function<void(std::string_view)> on_stdout;
    std::function<void(std::string_view)> on_stderr;
    std::function<void(bool is_stderr)> on_eof;  // a pipe reached EOF (or was closed)
    std::function<void(ExitStatus)> on_exit;     // the process exited (pipes may stay open)
  };
  virtual ~Process() = default;
  virtual pid_t pid() const = 0;
  // Signals the whole process group.
  virtual void signalGroup(int sig) = 0;
  // Stops reading: first delivers whatever is already buffered in the pipes (everything an
  // exited process wrote), then closes our ends, so background children keeping them open no
  // longer hold us. Fires on_eof for pipes still open.
  virtual void closePipes() = 0;
  virtual bool exited() const = 0;
};

// Starts the command. Callbacks run on the loop. The Process must outlive its callbacks' use:
// keep the shared_ptr until on_exit and both on_eof have fired.
Result<std::shared_ptr<Process>> spawnProcess(asio::io_context& io, const Command& cmd,
                                              Process::Callbacks callbacks);

}  // namespace wsa::exec
