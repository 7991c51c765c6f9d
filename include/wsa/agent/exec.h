#pragma once
// Child processes driven from the event loop: fork+exec into a new session (own process group),
// stdout/stderr read asynchronously, exit noticed through a pidfd. Used by scripts and metadata
// (and later SSH exec sessions).

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsa/common/result.h"

namespace asio {
class io_context;
}

namespace wsa::agent {

// Niceness and OOM score for children, when process priority management is on. Computed once
// from the agent's own values, following the reference agent: OOM score 0 if the agent's is
// negative, 1000 if it is at least 998, else 998; niceness the agent's plus 5, at most 19.
// Explicit values override. A child never touches other processes.
struct ChildPriority {
  std::optional<int> oom_score_adj;
  std::optional<int> nice;
};
ChildPriority computeChildPriority(std::optional<int> explicit_oom,
                                   std::optional<int> explicit_nice);

// argv/envp arrays for execve, built before fork (the child must not allocate).
struct ExecArgs {
  ExecArgs(std::vector<std::string> args, std::vector<std::string> env);
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;  // null-terminated, pointing into args/env
};

// fork() for a child that will call execInChild: every signal is blocked in the child from the
// start, until execInChild has reset the dispositions. A signal sent to the new pid early (a
// session ended at once) then stays pending and acts on the child as it would on the program,
// instead of running a handler inherited from the agent and being lost. The parent's mask is
// untouched once this returns.
pid_t forkForExec();

// The end of every fork, in the child, with async-signal-safe calls only: default signal
// dispositions, then an empty mask, the OOM score (`oom_text`, may be empty) and niceness, the
// working directory, every descriptor above 2 closed except `status_fd` (close-on-exec), then
// execve. A failure writes errno to `status_fd` and exits 127.
[[noreturn]] void execInChild(const std::string& program, char** argv, char** envp,
                              const ChildPriority& priority, const std::string& oom_text,
                              const std::string& cwd, int status_fd);

// The parent's side of execInChild's status pipe: closes `status_fd` and returns the errno
// the child reported, or 0 once the exec succeeded (the pipe closed on exec).
int awaitExec(int status_fd);

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

// Resolves a program name through PATH as found in `env` (or the agent's PATH).
std::string resolveProgram(const std::string& name, const std::vector<std::string>& env);

}  // namespace wsa::agent
