#pragma once
// Runs the manifest's scripts: start scripts (concurrently, once per agent lifetime), stop
// scripts (at graceful shutdown), cron scripts (on their schedule, never two runs of one script
// at once).
//
// Each run: the user's shell (or the script's #! interpreter), its own process group, the
// command environment plus WSA_SCRIPT_DATA_DIR / WSA_SCRIPT_BIN_DIR; output appended to the
// script's log file and streamed as log lines (stdout info, stderr error). On timeout the
// process group gets SIGHUP, then SIGKILL after the kill delay. If the script exits but a
// background child keeps its output pipes open, the pipes are closed after the wait delay and
// the run is PIPES_LEFT_OPEN, with a warning in the log — the agent never hangs on them.
// Every run is reported with ScriptCompleted.

#include <spdlog/logger.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/cron.h"
#include "agent/log_sender.h"
#include "agent/metrics.h"
#include "agent/report_queue.h"
#include "wsa/common/clock.h"
#include "wsa/exec/environment.h"
#include "wsa/exec/process.h"

namespace wsa::agent {

struct ScriptRunnerOptions {
  std::string log_dir;
  std::string data_dir;  // <script-data-dir>/wsa-script-data
  Duration wait_delay = std::chrono::seconds(10);
  Duration kill_delay = std::chrono::seconds(10);
};

// Builds the command for a script: argv, environment and directory. `extra_env` holds the
// script's own variables.
using CommandFactory =
    std::function<exec::Command(const std::string& script, const exec::EnvMap& extra_env)>;

class ScriptRunner {
 public:
  struct StageResult {
    size_t ran = 0;
    bool timed_out = false;
    bool failed = false;
    Duration elapsed{};
  };

  ScriptRunner(asio::io_context& io, Clock& clock, LogSender& logs,
               ReportQueue<v1::ScriptCompletedRequest>& timings, AgentMetrics& metrics,
               ScriptRunnerOptions options, CommandFactory factory);
  ~ScriptRunner();

  // Creates the data and bin directories and validates cron specs. Call once.
  Status init(const std::vector<v1::Script>& scripts);
  void runStage(v1::Timing::Stage stage, std::function<void(StageResult)> done);
  void startCron();
  void stopCron();
  // Hard stop: SIGKILL every running script's process group.
  void killAll();
  size_t running() const;
  const std::string& binDir() const { return bin_dir_; }
  const std::string& dataDir() const { return options_.data_dir; }
  std::string logPathFor(const v1::Script& s) const;

  class Run;

 private:
  void runOne(const v1::Script& s, v1::Timing::Stage stage, std::function<void(bool, bool)> done);
  void scheduleCron(size_t index);

  asio::io_context& io_;
  Clock& clock_;
  LogSender& logs_;
  ReportQueue<v1::ScriptCompletedRequest>& timings_;
  AgentMetrics& metrics_;
  ScriptRunnerOptions options_;
  CommandFactory factory_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<v1::Script> scripts_;
  std::string bin_dir_;
  struct CronEntry {
    size_t script;
    CronSchedule schedule;
    std::unique_ptr<Timer> timer;
    bool running = false;
  };
  std::vector<CronEntry> crons_;
  bool cron_started_ = false;
  std::map<Run*, std::shared_ptr<Run>> runs_;
};

// Splits a byte stream into lines (without "\n" or a trailing "\r"). A line longer than
// `max_line` is emitted in pieces so memory stays bounded.
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line = 64 * 1024) : max_(max_line) {}
  template <typename Emit>
  void feed(std::string_view data, Emit&& emit) {
    for (char c : data) {
      if (c == '\n') {
        if (!buf_.empty() && buf_.back() == '\r') buf_.pop_back();
        emit(std::move(buf_));
        buf_.clear();
      } else {
        buf_ += c;
        if (buf_.size() >= max_) {
          emit(std::move(buf_));
          buf_.clear();
        }
      }
    }
  }
  template <typename Emit>
  void finish(Emit&& emit) {
    if (!buf_.empty()) {
      if (buf_.back() == '\r') buf_.pop_back();
      emit(std::move(buf_));
      buf_.clear();
    }
  }

 private:
  size_t max_;
  std::string buf_;
};

}  // namespace wsa::agent
