#pragma once
// The fork/exec steps every child of the agent goes through, whether its output is read on the
// event loop (process.h) or polled by a session thread (term/child.h): priority, argv/envp
// prepared before fork, a fork that holds signals back until the child's dispositions are reset,
// and the exec status pipe.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace wsa::exec {

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

// Resolves a program name through PATH as found in `env` (or the agent's PATH).
std::string resolveProgram(const std::string& name, const std::vector<std::string>& env);

}  // namespace wsa::exec
