#include "support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "support/util.h"

extern char** environ;

namespace wsa::test {

namespace {

int openOr(const std::string& path, int flags, const char* fallback) {
  const char* p = path.empty() ? fallback : path.c_str();
  return ::open(p, flags | O_CLOEXEC, 0644);
}

}  // namespace

std::unique_ptr<Process> Process::start(const Options& o) {
  if (o.argv.empty()) throw std::runtime_error("Process::start: empty argv");
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& u : o.unset_env) env.erase(u);
  for (const auto& kv : o.env) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = o.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int in = openOr(o.stdin_path, O_RDONLY, "/dev/null");
  int out = openOr(o.stdout_path, O_WRONLY | O_CREAT | O_APPEND, "/dev/null");
  int err = openOr(o.stderr_path, O_WRONLY | O_CREAT | O_APPEND, "/dev/null");
  if (in < 0 || out < 0 || err < 0) throw std::runtime_error("Process::start: cannot open stdio");

  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) _exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    ::execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  ::setpgid(pid, pid);
  ::close(in);
  ::close(out);
  ::close(err);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  return std::unique_ptr<Process>(new Process(pid, pidfd));
}

Process::~Process() {
  kill();
  if (pidfd_ >= 0) ::close(pidfd_);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    struct pollfd pfd {
      pidfd_, POLLIN, 0
    };
    ::poll(&pfd, 1, static_cast<int>(left.count()));
  }
}

bool Process::running() {
  return !wait(std::chrono::milliseconds(0)).has_value();
}

void Process::signal(int sig) {
  if (!status_) ::kill(pid_, sig);
}

void Process::kill() {
  if (status_) {
    ::kill(-pid_, SIGKILL);  // leftovers in the group
    return;
  }
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  wait(std::chrono::milliseconds(10000));
}

bool waitForReadyFile(Process& process, const std::string& path,
                      std::chrono::milliseconds timeout) {
  bool ok = waitUntil(
      [&] {
        if (!process.running()) return true;
        auto text = readText(path);
        return !text.empty() && text.back() == '\n';
      },
      timeout);
  return ok && process.running();
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::vector<std::string>& env, const std::string& stdin_data) {
  char tmpl[] = "/tmp/wsa-run-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ::close(fd);
  std::string out_path = tmpl;
  std::string in_path;
  if (!stdin_data.empty()) {
    char in_tmpl[] = "/tmp/wsa-in-XXXXXX";
    int ifd = ::mkstemp(in_tmpl);
    (void)!::write(ifd, stdin_data.data(), stdin_data.size());
    ::close(ifd);
    in_path = in_tmpl;
  }
  Process::Options o;
  o.argv = argv;
  o.env = env;
  o.stdout_path = out_path;
  o.stderr_path = out_path;
  o.stdin_path = in_path;
  auto p = Process::start(o);
  auto code = p->wait(timeout);
  if (!code) p->kill();
  RunResult r;
  r.code = code.value_or(-1);
  std::ifstream f(out_path);
  std::stringstream ss;
  ss << f.rdbuf();
  r.output = ss.str();
  ::unlink(out_path.c_str());
  if (!in_path.empty()) ::unlink(in_path.c_str());
  return r;
}

}  // namespace wsa::test

namespace wsa::test {

SplitResult runSplit(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                     const std::vector<std::string>& env, const std::string& stdin_data) {
  TempDir dir;
  Process::Options o;
  o.argv = argv;
  o.env = env;
  o.stdout_path = dir.file("out");
  o.stderr_path = dir.file("err");
  if (!stdin_data.empty()) {
    writeText(dir.file("in"), stdin_data);
    o.stdin_path = dir.file("in");
  }
  auto p = Process::start(o);
  auto code = p->wait(scaled(timeout));
  if (!code) p->kill();
  SplitResult r;
  r.code = code.value_or(-1);
  r.out = readText(dir.file("out"));
  r.err = readText(dir.file("err"));
  return r;
}

}  // namespace wsa::test
