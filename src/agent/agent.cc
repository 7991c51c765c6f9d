#include "agent/agent.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <nlohmann/json.hpp>

#include "wsa/common/fs.h"
#include "wsa/common/logging.h"
#include "wsa/common/uuid.h"

namespace wsa::agent {

using google::protobuf::util::TimeUtil;
using json = nlohmann::json;

namespace {

// Runs `inner` once the checkpoint completes successfully; stopping before that ends at once.
class AfterCheckpoint final : public Routine {
 public:
  AfterCheckpoint(Checkpoint& cp, std::function<std::shared_ptr<Routine>()> make)
      : cp_(cp), make_(std::move(make)) {}
  void start(Exit exit) override {
    exit_ = std::move(exit);
    auto weak = std::weak_ptr<Routine>(shared_from_this());
    cp_.wait([this, weak](const Status& st) {
      auto self = weak.lock();
      if (!self || done_) return;
      if (!st.ok() || stopping_) {
        finish(Status::success());
        return;
      }
      inner_ = make_();
      inner_->start([this, self](Status s) { finish(std::move(s)); });
    });
  }
  void stop() override {
    stopping_ = true;
    if (inner_) {
      inner_->stop();
    } else {
      finish(Status::success());
    }
  }

 private:
  void finish(Status st) {
    if (done_) return;
    done_ = true;
    auto e = std::move(exit_);
    e(std::move(st));
  }
  Checkpoint& cp_;
  std::function<std::shared_ptr<Routine>()> make_;
  std::shared_ptr<Routine> inner_;
  Exit exit_;
  bool stopping_ = false;
  bool done_ = false;
};

std::string stateJson(const Lifecycle::Entry& e) {
  return Lifecycle::name(e.state) + "@" + formatRfc3339(e.changed_at);
}

}  // namespace

// One connection's routines.
class Agent::Session {
 public:
  Session(Agent& a, std::unique_ptr<AgentApi> api) : a_(a), api_(std::move(api)) {
    Supervisor::Hooks hooks;
    hooks.on_done = [this](Status st) {
      // Never destroy the session from inside its own callbacks.
      asio::post(a_.io_, [agent = &a_, st] { agent->sessionDone(st); });
    };
    hooks.on_exit = [this](const std::string& name, const Status& st, bool requested) {
      if (!st.ok() && !requested) {
        ++a_.metrics_.routine_errors[name];
        a_.log_->warn("routine {} failed: {}", name, st.error());
      } else {
        a_.log_->debug("routine {} exited{}", name, requested ? " (stopped)" : "");
      }
    };
    sup_ = std::make_unique<Supervisor>(std::move(hooks));
  }

  void start(bool graceful) {
    Agent& a = a_;
    AgentApi& api = *api_;
    // The manifest call goes first and authenticates the connection; everything else waits for
    // it, so a bad token costs one call per attempt and startup is reported before anything
    // else. A connection made during graceful shutdown skips the manifest (kStop).
    auto after = [this](std::function<std::shared_ptr<Routine>()> make) {
      return std::make_shared<AfterCheckpoint>(manifest_ok_, std::move(make));
    };
    if (graceful) manifest_ok_.complete(Status::success());
    sup_->add("manifest", Behavior::kStop, makeManifest());
    sup_->add("events", Behavior::kRemain, after([this] { return makeEvents(); }));
    sup_->add("lifecycle", Behavior::kRemain,
              after([&a, &api] { return makeLifecycleReporter(a.lifecycle_, api); }));
    sup_->add("logs", Behavior::kRemain, after([&a, &api] { return a.logs_.makeRoutine(api); }));
    sup_->add("script timings", Behavior::kRemain,
              after([&a, &api] { return a.timings_.makeRoutine(api); }));
    sup_->add("connection reports", Behavior::kRemain,
              after([&a, &api] { return a.connections_.makeRoutine(api); }));
    sup_->add("metadata", Behavior::kStop,
              after([&a, &api] { return a.metadata_.makeRoutine(api); }));
    sup_->add("app health", Behavior::kStop,
              after([&a, &api] { return a.app_health_.makeRoutine(api); }));
    sup_->add("banners", Behavior::kStop, after([this] { return makeBanners(); }));
    sup_->add("stats", Behavior::kStop, after([this] { return makeStats(); }));
    // The extensions' routines (the overlay's coordination).
    for (AgentExtension* ext : a.extensions_) {
      for (auto& r : ext->routinesFor(api)) {
        sup_->add(r.name, r.behavior,
                  after([make = std::move(r.make)]() -> std::shared_ptr<Routine> {
                    if (auto routine = make ? make() : nullptr) return routine;
                    return std::make_shared<IdleRoutine>();
                  }));
      }
    }
    if (graceful) sup_->beginGracefulShutdown();
    sup_->start();
  }
  void beginGracefulShutdown() { sup_->beginGracefulShutdown(); }
  void stopAll() {
    sup_->stopAll();
    api_->cancelAll();
  }
  std::vector<std::string> running() const { return sup_->runningNames(); }
  void refreshBanners() {
    if (banner_refresh_) banner_refresh_();
  }

 private:
  std::shared_ptr<Routine> makeEvents() {
    struct State {
      std::unique_ptr<EventStream> stream;
      bool stopping = false;
      Routine::Exit exit;
    };
    auto st = std::make_shared<State>();
    return makeRoutine(
        [this, st](Routine::Exit exit) {
          st->exit = std::move(exit);
          v1::StreamEventsRequest req;
          req.set_agent_instance_id(a_.logs_.instanceId());
          req.set_agent_version(a_.options_.version);
          st->stream = api_->streamEvents(
              req,
              [this](v1::ServerEvent ev) {
                if (ev.has_banners_changed()) {
                  a_.log_->info("the control server changed the banners; refreshing");
                  refreshBanners();
                } else if (ev.has_shutdown_requested()) {
                  a_.shutdown("requested by the control server: " +
                              ev.shutdown_requested().reason());
                }
              },
              [st](const RpcStatus& s) {
                st->stream.reset();
                if (!st->exit) return;
                auto e = std::move(st->exit);
                st->exit = nullptr;
                if (st->stopping) {
                  e(Status::success());
                } else {
                  e(makeError("event stream ended: " + s.text()));
                }
              });
        },
        [st] {
          st->stopping = true;
          if (st->stream) st->stream->cancel();
        });
  }

  std::shared_ptr<Routine> makeManifest() {
    struct State {
      bool stopping = false;
      bool done = false;
      Routine::Exit exit;
    };
    auto st = std::make_shared<State>();
    auto finish = [st](Status s) {
      if (st->done) return;
      st->done = true;
      auto e = std::move(st->exit);
      e(std::move(s));
    };
    return makeRoutine(
        [this, st, finish](Routine::Exit exit) {
          st->exit = std::move(exit);
          api_->getManifest([this, st, finish](const RpcStatus& rs, v1::Manifest m) {
            if (st->done) return;
            if (!rs.ok()) {
              manifest_ok_.complete(makeError(rs.text()));
              finish(st->stopping ? Status::success() : makeError("fetch manifest: " + rs.text()));
              return;
            }
            if (m.agent_id().empty() || !isUuid(m.agent_id())) {
              manifest_ok_.complete(makeError("no agent id"));
              finish(makeError("the manifest has no valid agent id"));
              return;
            }
            std::string dir = exec::expandDirectory(m.directory(), a_.user_.home, a_.process_env_);
            v1::UpdateStartupRequest su;
            su.mutable_startup()->set_version(a_.options_.version);
            su.mutable_startup()->set_expanded_directory(dir);
            for (auto s : a_.options_.subsystems) su.mutable_startup()->add_subsystems(s);
            api_->updateStartup(su, [this, st, finish, m = std::move(m), dir](const RpcStatus& rs2,
                                                                              v1::Startup) mutable {
              if (st->done) return;
              if (!rs2.ok()) {
                manifest_ok_.complete(makeError(rs2.text()));
                finish(st->stopping ? Status::success()
                                    : makeError("update startup: " + rs2.text()));
                return;
              }
              a_.onManifest(std::move(m), dir);
              manifest_ok_.complete(Status::success());
              finish(Status::success());
            });
          });
        },
        [st] { st->stopping = true; });
  }

  std::shared_ptr<Routine> makeBanners() {
    auto r = std::make_shared<BannersRoutine>(a_, *api_);
    std::weak_ptr<BannersRoutine> weak = r;
    banner_refresh_ = [weak] {
      if (auto b = weak.lock()) b->fetch();
    };
    return r;
  }

  std::shared_ptr<Routine> makeStats() { return std::make_shared<StatsRoutine>(a_, *api_); }

  // Fetches banners at start, every refresh interval, and when asked (server events).
  class BannersRoutine final : public BasicRoutine {
   public:
    BannersRoutine(Agent& a, AgentApi& api) : a_(a), api_(api), timer_(a.clock_.createTimer()) {}
    void fetch() {
      if (done() || stopping()) return;
      if (inFlight()) {
        again_ = true;  // a request during a call is remembered
        return;
      }
      timer_->cancel();
      beginCall();
      auto self = shared_from_this();
      a_.refreshBanners(api_, [this, self](const RpcStatus& rs) {
        if (!endCall()) return;
        if (!rs.ok()) {
          finish(stopping() ? Status::success() : makeError("fetch banners: " + rs.text()));
          return;
        }
        if (finishIfStopping()) return;
        if (again_) {
          again_ = false;
          fetch();
          return;
        }
        auto weak = weak_from_this();
        timer_->schedule(a_.options_.banner_refresh, [this, weak] {
          if (auto s = weak.lock()) fetch();
        });
      });
    }

   private:
    void onStart() override { fetch(); }
    void onStop() override { timer_->cancel(); }
    void onFinish() override { timer_->cancel(); }
    Agent& a_;
    AgentApi& api_;
    std::unique_ptr<Timer> timer_;
    bool again_ = false;
  };

  // UpdateStats: first without stats to learn the interval, then a report every interval.
  class StatsRoutine final : public BasicRoutine {
   public:
    StatsRoutine(Agent& a, AgentApi& api) : a_(a), api_(api), timer_(a.clock_.createTimer()) {}

   private:
    void onStart() override { send(false); }
    void onStop() override { timer_->cancel(); }
    void onFinish() override { timer_->cancel(); }
    void send(bool with_stats) {
      if (done() || stopping()) return;
      v1::UpdateStatsRequest req;
      if (with_stats) {
        auto* s = req.mutable_stats();
        s->set_connection_median_latency_ms(-1);
        for (AgentExtension* ext : a_.extensions_) ext->fillStats(s);
        a_.metrics_.toStats(s);
      }
      beginCall();
      auto self = shared_from_this();
      api_.updateStats(req, [this, self](const RpcStatus& rs, const v1::UpdateStatsResponse& r) {
        if (!endCall()) return;
        if (!rs.ok()) {
          finish(stopping() ? Status::success() : makeError("update stats: " + rs.text()));
          return;
        }
        if (finishIfStopping()) return;
        if (r.has_report_interval()) {
          auto ns = TimeUtil::DurationToNanoseconds(r.report_interval());
          if (ns > 0) a_.stats_interval_ = std::chrono::nanoseconds(ns);
        }
        auto weak = weak_from_this();
        timer_->schedule(a_.stats_interval_, [this, weak] {
          if (auto s = weak.lock()) send(true);
        });
      });
    }
    Agent& a_;
    AgentApi& api_;
    std::unique_ptr<Timer> timer_;
  };

  Agent& a_;
  std::unique_ptr<AgentApi> api_;
  std::unique_ptr<Supervisor> sup_;
  Checkpoint manifest_ok_;
  std::function<void()> banner_refresh_;
};

Agent::Agent(asio::io_context& io, Clock& clock, AgentOptions options,
             std::unique_ptr<AgentApiFactory> api_factory, AgentMetrics& metrics, HealthProbe probe)
    : io_(io),
      clock_(clock),
      options_(std::move(options)),
      api_factory_(std::move(api_factory)),
      metrics_(metrics),
      log_(logging::get("agent")),
      user_(exec::currentUser()),
      process_env_(exec::environFromProcess()),
      backoff_(options_.backoff_floor, options_.backoff_cap),
      reconnect_timer_(clock.createTimer()),
      shutdown_timer_(clock.createTimer()),
      lifecycle_(clock),
      logs_(clock, newUuid(),
            [&] {
              LogSenderOptions o;
              o.max_queued_bytes = options_.log_queue_bytes;
              return o;
            }()),
      timings_("script timings", options_.report_queue_capacity,
               [](AgentApi& api, const v1::ScriptCompletedRequest& r,
                  std::function<void(const RpcStatus&)> done) {
                 api.scriptCompleted(
                     r, [done = std::move(done)](const RpcStatus& s, v1::ScriptCompletedResponse) {
                       done(s);
                     });
               }),
      connections_("connection reports", options_.report_queue_capacity,
                   [](AgentApi& api, const v1::ReportConnectionRequest& r,
                      std::function<void(const RpcStatus&)> done) {
                     api.reportConnection(
                         r, [done = std::move(done)](const RpcStatus& s,
                                                     v1::ReportConnectionResponse) { done(s); });
                   }),
      metadata_(io, clock, metrics, MetadataOptions{options_.metadata_tick, 10 * 1024},
                [this](const std::string& script) { return makeCommand(script, {}); }),
      app_health_(clock, metrics, std::move(probe), options_.app_health_report),
      stats_interval_(options_.default_stats_interval) {
  for (const char* k : {"WSA_AGENT_TOKEN", "WSA_AGENT_TOKEN_FILE"}) process_env_.erase(k);
  if (options_.manage_priority) {
    priority_ = exec::computeChildPriority(options_.child_oom_score, options_.child_nice);
  }
  updateCommandContext();
  metrics_.addCollector([this](metrics::Families& out) { collectMetrics(out); });
}

void Agent::collectMetrics(metrics::Families& out) const {
  auto s = logs_.stats();
  out.gauge("wsa_agent_logs_queued_bytes", "Script output waiting to be sent (bounded)",
            s.queued_bytes);
  out.gauge("wsa_agent_logs_queued_lines", "Script log lines waiting to be sent", s.queued_lines);
  out.counter("wsa_agent_logs_sent_total", "Script log lines acknowledged by the control server",
              s.sent_lines);
  out.counters("wsa_agent_logs_dropped_total",
               "Script log lines not sent, by reason (still in local log files)")
      .add(s.dropped_limit_exceeded, {{"reason", "limit_exceeded"}})
      .add(s.dropped_line_too_long, {{"reason", "line_too_long"}})
      .add(s.dropped_queue_full, {{"reason", "queue_full"}});
  out.counters("wsa_agent_reports_dropped_total",
               "Reports dropped because their queue was full, by queue")
      .add(connections_.dropped(), {{"queue", "connections"}})
      .add(timings_.dropped(), {{"queue", "script_timings"}});
  out.gauge("wsa_agent_lifecycle_state", "Current lifecycle state (1 created .. 9 off)",
            static_cast<int>(lifecycle_.current()));
  out.gauge("wsa_agent_info", "Always 1; labels describe the agent", 1,
            {{"version", options_.version}});
}

Agent::~Agent() {
  session_.reset();
  scripts_.reset();
}

exec::Command Agent::makeCommand(const std::string& script, const exec::EnvMap& extra_env) const {
  return exec::buildCommand(*command_ctx_, exec::Invocation::shellScript(script), {}, extra_env)
      .processCommand();
}

void Agent::updateCommandContext() {
  auto c = std::make_shared<exec::CommandContext>();
  c->process_env = process_env_;
  c->manifest = manifest_;
  c->agent_env = options_.agent_env;
  c->script_bin_dir = scripts_ ? scripts_->binDir() : "";
  c->user = user_;
  c->expanded_dir = expanded_dir_;
  c->priority = priority_;
  command_ctx_ = std::move(c);
}

// Tells the extensions (on the loop) that what sessions see changed: manifest, banners.
void Agent::contextChanged() {
  for (AgentExtension* ext : extensions_) ext->contextChanged();
}

void Agent::start() {
  if (started_) return;
  started_ = true;
  log_->info("wsa agent {} starting (user {}, shell {})", options_.version, user_.name,
             user_.shell);
  connectLoop();
}

void Agent::connectLoop() {
  if (hard_stopped_) return;
  auto delay = backoff_.next();
  if (delay > Duration::zero()) {
    log_->info("reconnecting in {} ms",
               std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  }
  reconnect_timer_->schedule(delay, [this] { startSession(); });
}

void Agent::startSession() {
  if (hard_stopped_) return;
  ++metrics_.connect_attempts;
  log_->info("connecting to the control server");
  session_started_ = clock_.now();
  session_ = std::make_unique<Session>(*this, api_factory_->connect());
  session_->start(shutting_down_);
}

void Agent::sessionDone(Status st) {
  session_.reset();
  metrics_.connected = false;
  if (hard_stopped_) return;
  if (!st.ok()) {
    ++metrics_.connect_failures;
    log_->warn("connection to the control server failed: {}", st.error());
  } else {
    log_->info("disconnected from the control server");
  }
  if (clock_.now() - session_started_ >= options_.backoff_reset_after) backoff_.reset();
  connectLoop();
}

void Agent::onManifest(v1::Manifest m, std::string expanded_dir) {
  // Secrets are kept for commands but never logged or served.
  manifest_ = std::make_shared<const v1::Manifest>(std::move(m));
  expanded_dir_ = std::move(expanded_dir);
  updateCommandContext();
  metrics_.connected = true;
  backoff_.reset();
  log_->info(
      "manifest for agent {} (workspace {}): {} script(s), {} metadata, {} app(s), "
      "directory \"{}\"",
      manifest_->agent_name(), manifest_->workspace_name(), manifest_->scripts_size(),
      manifest_->metadata_size(), manifest_->apps_size(), expanded_dir_);
  metadata_.setDescriptions({manifest_->metadata().begin(), manifest_->metadata().end()});
  app_health_.setApps({manifest_->apps().begin(), manifest_->apps().end()});
  writeSecretFiles(*manifest_);
  if (first_manifest_done_) {
    contextChanged();
    return;  // startup work happens once per agent lifetime
  }
  first_manifest_done_ = true;
  ScriptRunnerOptions so;
  so.log_dir = options_.log_dir;
  so.data_dir = options_.script_data_dir + "/wsa-script-data";
  so.wait_delay = options_.script_wait_delay;
  so.kill_delay = options_.script_kill_delay;
  scripts_ =
      std::make_unique<ScriptRunner>(io_, clock_, logs_, timings_, metrics_, so,
                                     [this](const std::string& script, const exec::EnvMap& extra) {
                                       return makeCommand(script, extra);
                                     });
  if (auto s = scripts_->init({manifest_->scripts().begin(), manifest_->scripts().end()}); !s) {
    log_->error("scripts: {}", s.error());
  }
  updateCommandContext();  // the script bin directory is known now
  contextChanged();
  if (shutting_down_) return;
  lifecycle_.set(v1::LIFECYCLE_STATE_STARTING);
  runStartScripts();
}

void Agent::runStartScripts() {
  scripts_->runStage(v1::Timing::STAGE_START, [this](ScriptRunner::StageResult r) {
    double secs = std::chrono::duration<double>(r.elapsed).count();
    metrics_.startup_script_seconds[(r.failed || r.timed_out) ? "false" : "true"] = secs;
    if (shutting_down_) return;
    if (r.timed_out) {
      lifecycle_.set(v1::LIFECYCLE_STATE_START_TIMEOUT);
    } else if (r.failed) {
      lifecycle_.set(v1::LIFECYCLE_STATE_START_ERROR);
    } else {
      lifecycle_.set(v1::LIFECYCLE_STATE_READY);
    }
    scripts_->startCron();
  });
}

void Agent::refreshBanners(AgentApi& api, std::function<void(const RpcStatus&)> done) {
  api.getAnnouncementBanners(
      [this, done = std::move(done)](const RpcStatus& st, v1::GetAnnouncementBannersResponse r) {
        if (st.ok()) {
          banners_.assign(r.announcement_banners().begin(), r.announcement_banners().end());
          std::string text;
          for (const auto& b : banners_) {
            if (b.enabled()) text += (text.empty() ? "" : " | ") + b.message();
          }
          log_->debug("banners: {}", text.empty() ? "(none)" : text);
          contextChanged();
        }
        done(st);
      });
}

void Agent::writeSecretFiles(const v1::Manifest& m) {
  for (const auto& s : m.secrets()) {
    if (s.file_path().empty()) continue;
    std::string path = s.file_path();
    if (path.rfind("~/", 0) == 0) path = user_.home + path.substr(1);
    if (path.empty() || path.front() != '/') {
      log_->warn("secret file path \"{}\" is not absolute; skipped", s.file_path());
      continue;
    }
    auto slash = path.rfind('/');
    (void)makeDirs(path.substr(0, slash), 0700);
    if (auto st = writeFileAtomic(path, s.value(), 0600); !st) {
      log_->warn("secret file: {}", st.error());
    }
  }
}

void Agent::onSignal(int sig) {
  ++signals_;
  if (signals_ >= 2) {
    log_->warn("second signal ({}): stopping now", sig);
    hardStop(1);
    return;
  }
  shutdown(sig == 15 ? "SIGTERM" : (sig == 2 ? "SIGINT" : "signal " + std::to_string(sig)));
}

void Agent::shutdown(const std::string& reason) {
  if (shutting_down_ || hard_stopped_) return;
  shutting_down_ = true;
  log_->info("graceful shutdown: {}", reason);
  for (AgentExtension* ext : extensions_) ext->stopAccepting();
  lifecycle_.set(v1::LIFECYCLE_STATE_SHUTTING_DOWN);
  if (session_) session_->beginGracefulShutdown();
  if (scripts_) {
    scripts_->stopCron();
    scripts_->killAll();  // start and cron scripts still running end now
  }
  beginStopScripts();
}

void Agent::beginStopScripts() {
  if (!scripts_) {
    finalState(v1::LIFECYCLE_STATE_OFF);
    return;
  }
  shutdown_timer_->schedule(options_.stop_scripts_timeout, [this] {
    log_->warn(
        "stop scripts still running after {} s; killing them",
        std::chrono::duration_cast<std::chrono::seconds>(options_.stop_scripts_timeout).count());
    scripts_->killAll();
    finalState(v1::LIFECYCLE_STATE_SHUTDOWN_TIMEOUT);
  });
  scripts_->runStage(v1::Timing::STAGE_STOP, [this](ScriptRunner::StageResult r) {
    if (stop_scripts_done_) return;
    if (r.timed_out) {
      finalState(v1::LIFECYCLE_STATE_SHUTDOWN_TIMEOUT);
    } else if (r.failed) {
      finalState(v1::LIFECYCLE_STATE_SHUTDOWN_ERROR);
    } else {
      finalState(v1::LIFECYCLE_STATE_OFF);
    }
  });
}

void Agent::finalState(v1::LifecycleState s) {
  if (stop_scripts_done_) return;
  stop_scripts_done_ = true;
  lifecycle_.set(s);
  // Deliver the final state, the logs and the reports, bounded by the flush timeout.
  shutdown_timer_->schedule(options_.flush_timeout, [this] {
    log_->warn(
        "gave up waiting for the control server after {} ms: lifecycle {}, {} log "
        "line(s) and {} report(s) not delivered",
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.flush_timeout).count(),
        lifecycle_.allReported() ? "delivered" : "not delivered", logs_.stats().queued_lines,
        timings_.size() + connections_.size());
    hardStop(1);
  });
  auto check = [this] { checkFlushed(); };
  lifecycle_sub_ = lifecycle_.changed().subscribe(check);
  logs_sub_ = logs_.changed().subscribe(check);
  timings_sub_ = timings_.changed().subscribe(check);
  logs_.flushAll();
  checkFlushed();
}

void Agent::checkFlushed() {
  if (hard_stopped_ || !stop_scripts_done_) return;
  if (lifecycle_.allReported() && logs_.empty() && timings_.empty()) {
    log_->info("final state {} and all logs delivered; stopping",
               Lifecycle::name(lifecycle_.current()));
    // Post: we may be inside a routine's callback.
    asio::post(io_, [this] { hardStop(0); });
  }
}

void Agent::hardStop(int exit_code) {
  if (hard_stopped_) return;
  hard_stopped_ = true;
  lifecycle_sub_.reset();
  logs_sub_.reset();
  timings_sub_.reset();
  reconnect_timer_->cancel();
  shutdown_timer_->cancel();
  if (scripts_) {
    scripts_->stopCron();
    scripts_->killAll();
  }
  if (session_) session_->stopAll();
  log_->info("stopped (exit code {})", exit_code);
  logging::flush();
  if (!exit_reported_ && on_exit) {
    exit_reported_ = true;
    on_exit(exit_code);
  }
}

std::string Agent::debugState() const {
  json j;
  j["version"] = options_.version;
  j["user"] = user_.name;
  json states = json::array();
  for (const auto& e : lifecycle_.states()) states.push_back(stateJson(e));
  j["lifecycle"] = states;
  j["lifecycle_reported"] = Lifecycle::name(lifecycle_.lastReported());
  j["shutting_down"] = shutting_down_;
  j["connected"] = metrics_.connected;
  j["reconnect_attempts"] = backoff_.attempts();
  j["routines"] = session_ ? json(session_->running()) : json::array();
  auto ls = logs_.stats();
  j["logs"] = {{"queued_lines", ls.queued_lines},
               {"queued_bytes", ls.queued_bytes},
               {"sent_lines", ls.sent_lines},
               {"dropped_queue_full", ls.dropped_queue_full},
               {"limit_exceeded", ls.limit_exceeded}};
  json banners = json::array();
  for (const auto& b : banners_) {
    banners.push_back({{"enabled", b.enabled()}, {"message", b.message()}});
  }
  j["banners"] = banners;
  json md = json::object();
  for (const auto& [k, r] : metadata_.latest())
    md[k] = {{"value", r.value()}, {"error", r.error()}};
  j["metadata"] = md;
  json ah = json::object();
  for (const auto& [id, h] : app_health_.health()) ah[id] = v1::AppHealth_Name(h);
  j["app_health"] = ah;
  j["scripts_running"] = scripts_ ? scripts_->running() : 0;
  j["reports_queued"] = {{"script_timings", timings_.size()}, {"connections", connections_.size()}};
  j["expanded_directory"] = expanded_dir_;
  return j.dump(2) + "\n";
}

std::string Agent::debugManifest() const {
  if (!manifest_) return "null\n";
  v1::Manifest m = *manifest_;
  m.clear_secrets();
  for (auto& [k, v] : *m.mutable_environment_variables()) {
    if (!v.empty()) v = "***REDACTED***";
  }
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

}  // namespace wsa::agent
