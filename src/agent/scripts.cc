#include "agent/scripts.h"

#include <fcntl.h>
#include <google/protobuf/util/time_util.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "wsa/common/fs.h"
#include "wsa/common/logging.h"
#include "wsa/exec/environment.h"

namespace wsa::agent {

using google::protobuf::util::TimeUtil;

namespace {
const char* stageName(v1::Timing::Stage s) {
  switch (s) {
    case v1::Timing::STAGE_START:
      return "start";
    case v1::Timing::STAGE_STOP:
      return "stop";
    case v1::Timing::STAGE_CRON:
      return "cron";
    default:
      return "unknown";
  }
}
}  // namespace

class ScriptRunner::Run : public std::enable_shared_from_this<ScriptRunner::Run> {
 public:
  Run(ScriptRunner& r, v1::Script s, v1::Timing::Stage stage, std::function<void(bool, bool)> done)
      : r_(r),
        s_(std::move(s)),
        stage_(stage),
        done_(std::move(done)),
        timeout_timer_(r.clock_.createTimer()),
        kill_timer_(r.clock_.createTimer()),
        wait_timer_(r.clock_.createTimer()) {}
  ~Run() {
    if (fd_ >= 0) ::close(fd_);
  }

  void start() {
    start_mono_ = r_.clock_.now();
    start_sys_ = r_.clock_.systemNow();
    std::string path = r_.logPathFor(s_);
    auto slash = path.rfind('/');
    if (slash != std::string::npos) (void)makeDirs(path.substr(0, slash), 0755);
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      r_.log_->warn("script \"{}\": cannot open log file {}: {}", s_.display_name(), path,
                    std::strerror(errno));
    }
    std::string dir = r_.options_.data_dir + "/" + s_.log_source_id();
    (void)makeDirs(dir, 0700);
    exec::EnvMap extra{{"WSA_SCRIPT_DATA_DIR", dir}, {"WSA_SCRIPT_BIN_DIR", r_.bin_dir_}};
    exec::Command cmd = r_.factory_(s_.script(), extra);
    exec::Process::Callbacks cb;
    auto weak = weak_from_this();
    cb.on_stdout = [weak](std::string_view d) {
      if (auto self = weak.lock()) self->output(false, d);
    };
    cb.on_stderr = [weak](std::string_view d) {
      if (auto self = weak.lock()) self->output(true, d);
    };
    cb.on_eof = [weak](bool is_err) {
      if (auto self = weak.lock()) self->eof(is_err);
    };
    cb.on_exit = [weak](exec::ExitStatus st) {
      if (auto self = weak.lock()) self->exited(st);
    };
    auto p = exec::spawnProcess(r_.io_, cmd, std::move(cb));
    if (!p) {
      r_.log_->error("script \"{}\": {}", s_.display_name(), p.error());
      line(true, "wsa-agent: cannot start script: " + p.error());
      status_.code = 127;
      exited_ = true;
      out_eof_ = err_eof_ = true;
      failed_start_ = true;
      maybeComplete();
      return;
    }
    proc_ = *p;
    r_.log_->info("script \"{}\" ({}) started, pid {}", s_.display_name(), stageName(stage_),
                  proc_->pid());
    if (s_.timeout_seconds() > 0) {
      timeout_timer_->schedule(std::chrono::seconds(s_.timeout_seconds()), [weak] {
        if (auto self = weak.lock()) self->timeout();
      });
    }
  }

  void kill() {
    if (proc_ && !complete_) {
      proc_->signalGroup(SIGKILL);
      proc_->closePipes();
    }
  }

 private:
  void output(bool is_err, std::string_view data) {
    if (fd_ >= 0) (void)!::write(fd_, data.data(), data.size());
    auto& splitter = is_err ? err_lines_ : out_lines_;
    splitter.feed(data, [&](std::string l) { line(is_err, std::move(l)); });
  }
  void line(bool is_err, std::string text) {
    r_.logs_.enqueue(s_.log_source_id(), s_.display_name(),
                     is_err ? v1::LOG_LEVEL_ERROR : v1::LOG_LEVEL_INFO, std::move(text));
  }
  void eof(bool is_err) {
    auto& splitter = is_err ? err_lines_ : out_lines_;
    splitter.finish([&](std::string l) { line(is_err, std::move(l)); });
    (is_err ? err_eof_ : out_eof_) = true;
    maybeComplete();
  }
  void exited(exec::ExitStatus st) {
    status_ = st;
    exited_ = true;
    timeout_timer_->cancel();
    if (!(out_eof_ && err_eof_)) {
      // A background child may hold the pipes; give it the wait delay, then stop reading.
      auto weak = weak_from_this();
      wait_timer_->schedule(r_.options_.wait_delay, [weak] {
        if (auto self = weak.lock()) self->pipesLeftOpen();
      });
    }
    maybeComplete();
  }
  void timeout() {
    timed_out_ = true;
    r_.log_->warn("script \"{}\" timed out after {} s; sending SIGHUP to its process group",
                  s_.display_name(), s_.timeout_seconds());
    proc_->signalGroup(SIGHUP);
    auto weak = weak_from_this();
    kill_timer_->schedule(r_.options_.kill_delay, [weak] {
      if (auto self = weak.lock()) {
        self->r_.log_->warn("script \"{}\" still running after SIGHUP; killing it",
                            self->s_.display_name());
        self->proc_->signalGroup(SIGKILL);
        self->proc_->closePipes();
      }
    });
  }
  void pipesLeftOpen() {
    if (complete_) return;
    pipes_left_open_ = true;
    std::string warning =
        "WARNING: script exited but a background process still holds its output; stopped "
        "reading. Redirect background output (cmd > file 2>&1 &) so the script can finish "
        "cleanly.";
    if (fd_ >= 0) {
      std::string l = warning + "\n";
      (void)!::write(fd_, l.data(), l.size());
    }
    line(true, warning);
    r_.log_->warn("script \"{}\": exited but its output pipes stayed open; closed them",
                  s_.display_name());
    proc_->closePipes();
  }

  void maybeComplete() {
    if (complete_ || !exited_ || !out_eof_ || !err_eof_) return;
    complete_ = true;
    timeout_timer_->cancel();
    kill_timer_->cancel();
    wait_timer_->cancel();
    auto end_sys = r_.clock_.systemNow();
    Duration elapsed = r_.clock_.now() - start_mono_;
    v1::Timing::Status status = v1::Timing::STATUS_OK;
    if (timed_out_) {
      status = v1::Timing::STATUS_TIMED_OUT;
    } else if (pipes_left_open_) {
      status = v1::Timing::STATUS_PIPES_LEFT_OPEN;
    } else if (status_.code != 0) {
      status = v1::Timing::STATUS_EXIT_FAILURE;
    }
    int code = timed_out_ ? 255 : status_.reportedCode();
    bool ok = status == v1::Timing::STATUS_OK;
    r_.log_->info("script \"{}\" ({}) finished: {} in {:.3f} s", s_.display_name(),
                  stageName(stage_), timed_out_ ? "timed out" : status_.text(),
                  std::chrono::duration<double>(elapsed).count());
    v1::ScriptCompletedRequest req;
    auto* t = req.mutable_timing();
    t->set_script_id(s_.id());
    *t->mutable_start() = TimeUtil::NanosecondsToTimestamp(toUnixNanos(start_sys_));
    *t->mutable_end() = TimeUtil::NanosecondsToTimestamp(toUnixNanos(end_sys));
    t->set_exit_code(code);
    t->set_stage(stage_);
    t->set_status(status);
    r_.timings_.push(std::move(req));
    ++r_.metrics_.scripts_executed[{stageName(stage_), ok ? "true" : "false"}];
    r_.metrics_.observeScriptSeconds(stageName(stage_),
                                     std::chrono::duration<double>(elapsed).count());
    r_.logs_.flush(s_.log_source_id());
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    auto done = std::move(done_);
    auto self = shared_from_this();
    r_.runs_.erase(this);
    if (done) done(timed_out_, !ok && !timed_out_);
  }

  ScriptRunner& r_;
  v1::Script s_;
  v1::Timing::Stage stage_;
  std::function<void(bool, bool)> done_;
  std::unique_ptr<Timer> timeout_timer_;
  std::unique_ptr<Timer> kill_timer_;
  std::unique_ptr<Timer> wait_timer_;
  std::shared_ptr<exec::Process> proc_;
  int fd_ = -1;
  LineSplitter out_lines_;
  LineSplitter err_lines_;
  MonoTime start_mono_{};
  SystemTime start_sys_{};
  exec::ExitStatus status_;
  bool exited_ = false;
  bool out_eof_ = false;
  bool err_eof_ = false;
  bool timed_out_ = false;
  bool pipes_left_open_ = false;
  bool failed_start_ = false;
  bool complete_ = false;
};

ScriptRunner::ScriptRunner(asio::io_context& io, Clock& clock, LogSender& logs,
                           ReportQueue<v1::ScriptCompletedRequest>& timings, AgentMetrics& metrics,
                           ScriptRunnerOptions options, CommandFactory factory)
    : io_(io),
      clock_(clock),
      logs_(logs),
      timings_(timings),
      metrics_(metrics),
      options_(std::move(options)),
      factory_(std::move(factory)),
      log_(logging::get("scripts")) {}

ScriptRunner::~ScriptRunner() {
  stopCron();
  killAll();
}

std::string ScriptRunner::logPathFor(const v1::Script& s) const {
  std::string p = s.log_path();
  if (p.empty()) return options_.log_dir + "/wsa-script-" + s.log_source_id() + ".log";
  std::string home = homeDirectory();
  if (p == "~") p = home;
  if (p.rfind("~/", 0) == 0) p = home + p.substr(1);
  p = exec::expandVars(p, [](const std::string& k) -> std::optional<std::string> {
    const char* v = std::getenv(k.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
  if (p.empty() || p.front() != '/') p = options_.log_dir + "/" + p;
  return p;
}

Status ScriptRunner::init(const std::vector<v1::Script>& scripts) {
  scripts_ = scripts;
  bin_dir_ = options_.data_dir + "/bin";
  if (auto st = makeDirs(bin_dir_, 0700); !st)
    return makeError("script bin directory: " + st.error());
  if (auto st = makeDirs(options_.log_dir, 0755); !st)
    return makeError("log directory: " + st.error());
  for (size_t i = 0; i < scripts_.size(); ++i) {
    if (scripts_[i].cron().empty()) continue;
    auto c = CronSchedule::parse(scripts_[i].cron());
    if (!c) {
      log_->error("script \"{}\": {}; it will not be scheduled", scripts_[i].display_name(),
                  c.error());
      continue;
    }
    crons_.push_back(CronEntry{i, *c, clock_.createTimer()});
  }
  return Status::success();
}

void ScriptRunner::runOne(const v1::Script& s, v1::Timing::Stage stage,
                          std::function<void(bool, bool)> done) {
  auto run = std::make_shared<Run>(*this, s, stage, std::move(done));
  runs_[run.get()] = run;
  run->start();
}

void ScriptRunner::runStage(v1::Timing::Stage stage, std::function<void(StageResult)> done) {
  struct Acc {
    StageResult result;
    size_t pending = 0;
    MonoTime start;
    std::function<void(StageResult)> done;
  };
  auto acc = std::make_shared<Acc>();
  acc->start = clock_.now();
  acc->done = std::move(done);
  std::vector<const v1::Script*> selected;
  for (const auto& s : scripts_) {
    if ((stage == v1::Timing::STAGE_START && s.run_on_start()) ||
        (stage == v1::Timing::STAGE_STOP && s.run_on_stop())) {
      selected.push_back(&s);
    }
  }
  if (selected.empty()) {
    auto d = std::move(acc->done);
    d(acc->result);
    return;
  }
  acc->pending = selected.size();
  acc->result.ran = selected.size();
  for (const auto* s : selected) {
    runOne(*s, stage, [this, acc](bool timed_out, bool failed) {
      acc->result.timed_out = acc->result.timed_out || timed_out;
      acc->result.failed = acc->result.failed || failed;
      if (--acc->pending == 0) {
        acc->result.elapsed = clock_.now() - acc->start;
        auto d = std::move(acc->done);
        d(acc->result);
      }
    });
  }
}

void ScriptRunner::startCron() {
  if (cron_started_) return;
  cron_started_ = true;
  for (size_t i = 0; i < crons_.size(); ++i) scheduleCron(i);
}

void ScriptRunner::scheduleCron(size_t index) {
  auto& e = crons_[index];
  auto now = clock_.systemNow();
  auto next = e.schedule.next(now);
  if (!next) {
    log_->warn("cron \"{}\" never fires again", e.schedule.spec());
    return;
  }
  auto delay = std::chrono::duration_cast<Duration>(*next - now);
  e.timer->schedule(delay, [this, index] {
    auto& entry = crons_[index];
    const auto& s = scripts_[entry.script];
    if (entry.running) {
      log_->warn("cron script \"{}\" is still running; skipping this run", s.display_name());
    } else {
      entry.running = true;
      runOne(s, v1::Timing::STAGE_CRON,
             [this, index](bool, bool) { crons_[index].running = false; });
    }
    if (cron_started_) scheduleCron(index);
  });
}

void ScriptRunner::stopCron() {
  cron_started_ = false;
  for (auto& e : crons_) e.timer->cancel();
}

void ScriptRunner::killAll() {
  auto runs = runs_;
  for (auto& [ptr, run] : runs) run->kill();
}

size_t ScriptRunner::running() const {
  return runs_.size();
}

}  // namespace wsa::agent
