#pragma once
// Child processes for integration tests: started in their own process group, output captured
// to files, waited on with deadlines (pidfd + poll, never sleep-then-check), killed with their
// whole group on destruction.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wsa::test {

class Process {
 public:
  struct Options {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // "K=V" added to (or replacing in) the test's environment
    std::vector<std::string> unset_env;
    std::string cwd;
    std::string stdout_path;  // default: /dev/null
    std::string stderr_path;  // default: /dev/null
    std::string stdin_path;   // default: /dev/null
  };

  static std::unique_ptr<Process> start(const Options& options);
  ~Process();

  pid_t pid() const { return pid_; }
  // Exit code, or 128+signal; nullopt if still running at the deadline.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  void signal(int sig);
  // SIGKILL to the process group and reap.
  void kill();

 private:
  Process(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
  pid_t pid_;
  int pidfd_;
  std::optional<int> status_;
};

// Waits until `path` holds a complete line (a ready file written atomically by the process),
// while the process is alive. False if it died or the deadline passed.
bool waitForReadyFile(Process& process, const std::string& path, std::chrono::milliseconds timeout);

// Runs a command to completion (bounded); returns exit code and combined output.
struct RunResult {
  int code = -1;
  std::string output;
};
RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::vector<std::string>& env = {}, const std::string& stdin_data = "");

// Like run, with stdout and stderr kept apart.
struct SplitResult {
  int code = -1;
  std::string out;
  std::string err;
};
SplitResult runSplit(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                     const std::vector<std::string>& env = {}, const std::string& stdin_data = "");

}  // namespace wsa::test
