#pragma once
// The agent: one object on one event loop that owns all agent state.
//
// A reconnect loop (capped exponential backoff with jitter) runs one Session per connection.
// A Session supervises the connection's routines (see supervisor.h); the first real error ends
// it and the loop reconnects. State that must survive reconnects — lifecycle, queued logs and
// reports, metadata results, app health, the manifest and the banner — lives in the Agent.
// Startup work (start scripts, cron) happens once, on the first manifest.
//
// Graceful shutdown (docs/shutdown.md): stop accepting sessions, report shutting_down, stop the
// kStop routines, run stop scripts (bounded), report the final state, flush logs and reports
// (bounded), then stop hard.
//
// What is built on the agent (the services) sees it only as a ServiceHost and is driven only
// through the AgentExtension interface, registered by main.cc.

#include <spdlog/logger.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/api.h"
#include "agent/app_health.h"
#include "agent/backoff.h"
#include "agent/extension.h"
#include "agent/lifecycle.h"
#include "agent/log_sender.h"
#include "agent/metadata.h"
#include "agent/metrics.h"
#include "agent/report_queue.h"
#include "agent/scripts.h"
#include "agent/service_host.h"
#include "agent/supervisor.h"
#include "wsa/common/clock.h"
#include "wsa/exec/command.h"
#include "wsa/exec/environment.h"

namespace asio {
class io_context;
}

namespace wsa::agent {

struct AgentOptions {
  std::string version;
  std::string log_dir;
  std::string script_data_dir;
  std::vector<v1::Subsystem> subsystems;
  exec::EnvMap agent_env;  // agent-level variables for every command
  Duration backoff_floor = std::chrono::milliseconds(100);
  Duration backoff_cap = std::chrono::seconds(10);
  // A connection that lasted this long resets the backoff.
  Duration backoff_reset_after = std::chrono::seconds(30);
  Duration banner_refresh = std::chrono::minutes(2);
  Duration metadata_tick = std::chrono::seconds(1);
  Duration app_health_report = std::chrono::seconds(1);
  Duration script_wait_delay = std::chrono::seconds(10);
  Duration script_kill_delay = std::chrono::seconds(10);
  Duration default_stats_interval = std::chrono::minutes(5);
  // Upper bound on the stop-script phase (scripts without their own timeout included).
  Duration stop_scripts_timeout = std::chrono::minutes(10);
  // After the final lifecycle state: how long to wait for it and the logs to be delivered.
  Duration flush_timeout = std::chrono::seconds(5);
  size_t log_queue_bytes = 1u << 20;
  size_t report_queue_capacity = 2048;
  bool manage_priority = false;
  std::optional<int> child_oom_score;
  std::optional<int> child_nice;
};

class Agent final : public ServiceHost {
 public:
  Agent(asio::io_context& io, Clock& clock, AgentOptions options,
        std::unique_ptr<AgentApiFactory> api_factory, AgentMetrics& metrics, HealthProbe probe);
  ~Agent() override;

  void start();
  // Graceful shutdown (idempotent).
  void shutdown(const std::string& reason);
  // A signal arrived: the first starts graceful shutdown, the second forces the hard stop.
  void onSignal(int sig);
  void hardStop(int exit_code);
  // After the loop has stopped: cancel the calls still in flight and wait (bounded) for their
  // completions; run the loop once more to deliver them before anything is destroyed.
  void drainRpc(std::chrono::milliseconds timeout) { api_factory_->drain(timeout); }
  // Called once when the agent has stopped; the argument is the process exit code.
  std::function<void(int)> on_exit;
  // Registers what is built on the agent (the services; not owned, outlives the agent's
  // loop). Before start().
  void addExtension(AgentExtension* extension) { extensions_.push_back(extension); }

  // ServiceHost: what the services may see of the agent.
  // What every command the agent or a session starts is built from (never null): a new
  // snapshot whenever the manifest, its directory or the script bin directory changes.
  std::shared_ptr<const exec::CommandContext> commandContext() const override {
    return command_ctx_;
  }
  // The current manifest (null before the first).
  std::shared_ptr<const v1::Manifest> manifest() const override { return manifest_; }
  const std::vector<v1::BannerConfig>& banners() const override { return banners_; }
  // Queues a connection audit report (loop thread).
  void reportConnection(v1::ReportConnectionRequest r) override { connections_.push(std::move(r)); }
  std::string debugManifest() const override;

  // Debug view (JSON text).
  std::string debugState() const;
  Lifecycle& lifecycle() { return lifecycle_; }
  LogSender& logs() { return logs_; }
  // A script the agent runs (start, stop and cron scripts, metadata), with its own variables.
  exec::Command makeCommand(const std::string& script, const exec::EnvMap& extra_env) const;

  class Session;

 private:
  friend class Session;
  void connectLoop();
  void startSession();
  void sessionDone(Status st);
  void onManifest(v1::Manifest m, std::string expanded_dir);
  void runStartScripts();
  void refreshBanners(AgentApi& api, std::function<void(const RpcStatus&)> done);
  void beginStopScripts();
  void finalState(v1::LifecycleState s);
  void checkFlushed();
  void writeSecretFiles(const v1::Manifest& m);
  void updateCommandContext();
  void contextChanged();
  // The agent's collector: log queue, report queues, lifecycle, info.
  void collectMetrics(metrics::Families& out) const;

  asio::io_context& io_;
  Clock& clock_;
  AgentOptions options_;
  std::unique_ptr<AgentApiFactory> api_factory_;
  AgentMetrics& metrics_;
  std::shared_ptr<spdlog::logger> log_;
  exec::UserInfo user_;
  exec::EnvMap process_env_;
  exec::ChildPriority priority_;
  Backoff backoff_;
  std::unique_ptr<Timer> reconnect_timer_;
  std::unique_ptr<Timer> shutdown_timer_;
  std::unique_ptr<Session> session_;
  MonoTime session_started_{};

  Lifecycle lifecycle_;
  LogSender logs_;
  ReportQueue<v1::ScriptCompletedRequest> timings_;
  ReportQueue<v1::ReportConnectionRequest> connections_;
  MetadataCollector metadata_;
  AppHealth app_health_;
  std::unique_ptr<ScriptRunner> scripts_;
  std::shared_ptr<const v1::Manifest> manifest_;
  std::string expanded_dir_;
  std::shared_ptr<const exec::CommandContext> command_ctx_;
  std::vector<v1::BannerConfig> banners_;
  Duration stats_interval_;
  std::vector<AgentExtension*> extensions_;

  bool started_ = false;
  bool first_manifest_done_ = false;
  bool shutting_down_ = false;
  bool stop_scripts_done_ = false;
  bool hard_stopped_ = false;
  bool exit_reported_ = false;
  int signals_ = 0;
  Notifier::Subscription lifecycle_sub_;
  Notifier::Subscription logs_sub_;
  Notifier::Subscription timings_sub_;
};

}  // namespace wsa::agent
