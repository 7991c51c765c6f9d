#include "agent/metrics.h"

#include <prometheus/text_serializer.h>

namespace wsa::agent {

namespace {
prometheus::Registry& reg(const std::shared_ptr<prometheus::Registry>& r) {
  return *r;
}
}  // namespace

prometheus::Histogram::BucketBoundaries AgentMetrics::durationBuckets() {
  return {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
}

AgentMetrics::AgentMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      connect_attempts(prometheus::BuildCounter()
                           .Name("wsa_agent_connect_attempts_total")
                           .Help("Connections to the control server attempted")
                           .Register(reg(registry_))
                           .Add({})),
      connect_failures(prometheus::BuildCounter()
                           .Name("wsa_agent_connect_failures_total")
                           .Help("Connections that ended with an error (then retried with backoff)")
                           .Register(reg(registry_))
                           .Add({})),
      connected(prometheus::BuildGauge()
                    .Name("wsa_agent_connected")
                    .Help("1 while the agent holds a connection with a manifest")
                    .Register(reg(registry_))
                    .Add({})),
      routine_errors(prometheus::BuildCounter()
                         .Name("wsa_agent_routine_errors_total")
                         .Help("Errors that tore a connection down, by routine")
                         .Register(reg(registry_))),
      logs_queued_bytes(prometheus::BuildGauge()
                            .Name("wsa_agent_logs_queued_bytes")
                            .Help("Script output waiting to be sent (bounded)")
                            .Register(reg(registry_))
                            .Add({})),
      logs_queued_lines(prometheus::BuildGauge()
                            .Name("wsa_agent_logs_queued_lines")
                            .Help("Script log lines waiting to be sent")
                            .Register(reg(registry_))
                            .Add({})),
      logs_sent(prometheus::BuildCounter()
                    .Name("wsa_agent_logs_sent_total")
                    .Help("Script log lines acknowledged by the control server")
                    .Register(reg(registry_))
                    .Add({})),
      logs_dropped(prometheus::BuildCounter()
                       .Name("wsa_agent_logs_dropped_total")
                       .Help("Script log lines not sent, by reason (still in local log files)")
                       .Register(reg(registry_))),
      scripts_executed(prometheus::BuildCounter()
                           .Name("wsa_agent_scripts_executed_total")
                           .Help("Script runs by stage and outcome")
                           .Register(reg(registry_))),
      script_seconds(prometheus::BuildHistogram()
                         .Name("wsa_agent_script_duration_seconds")
                         .Help("Script run time by stage")
                         .Register(reg(registry_))),
      startup_script_seconds(prometheus::BuildGauge()
                                 .Name("wsa_agent_startup_script_seconds")
                                 .Help("Time the start scripts took, by outcome")
                                 .Register(reg(registry_))),
      metadata_collections(prometheus::BuildCounter()
                               .Name("wsa_agent_metadata_collections_total")
                               .Help("Metadata collections by result (ok, error, timeout)")
                               .Register(reg(registry_))),
      app_health_checks(prometheus::BuildCounter()
                            .Name("wsa_agent_app_health_checks_total")
                            .Help("App health checks by result")
                            .Register(reg(registry_))),
      reports_dropped(prometheus::BuildCounter()
                          .Name("wsa_agent_reports_dropped_total")
                          .Help("Reports dropped because their queue was full, by queue")
                          .Register(reg(registry_))),
      lifecycle_state(prometheus::BuildGauge()
                          .Name("wsa_agent_lifecycle_state")
                          .Help("Current lifecycle state (1 created .. 9 off)")
                          .Register(reg(registry_))
                          .Add({})),
      ssh_sessions(prometheus::BuildGauge()
                       .Name("wsa_agent_ssh_sessions")
                       .Help("SSH sessions open now, by type (ssh, vscode, jetbrains)")
                       .Register(reg(registry_))),
      ssh_sessions_total(prometheus::BuildCounter()
                             .Name("wsa_agent_ssh_sessions_total")
                             .Help("SSH sessions started")
                             .Register(reg(registry_))
                             .Add({})),
      ssh_connections(prometheus::BuildGauge()
                          .Name("wsa_agent_ssh_connections")
                          .Help("SSH connections open now")
                          .Register(reg(registry_))
                          .Add({})),
      ssh_failed_connections(
          prometheus::BuildCounter()
              .Name("wsa_agent_ssh_failed_connections_total")
              .Help("SSH connections that failed before a session (key exchange)")
              .Register(reg(registry_))
              .Add({})),
      ssh_sftp_sessions(prometheus::BuildCounter()
                            .Name("wsa_agent_ssh_sftp_sessions_total")
                            .Help("SFTP sessions started")
                            .Register(reg(registry_))
                            .Add({})),
      rpty_sessions(prometheus::BuildGauge()
                        .Name("wsa_agent_reconnecting_pty_sessions")
                        .Help("Reconnecting PTY sessions alive now")
                        .Register(reg(registry_))
                        .Add({})),
      rpty_attached(prometheus::BuildGauge()
                        .Name("wsa_agent_reconnecting_pty_connections")
                        .Help("Connections attached to reconnecting PTY sessions now")
                        .Register(reg(registry_))
                        .Add({})),
      rpty_connections_total(prometheus::BuildCounter()
                                 .Name("wsa_agent_reconnecting_pty_connections_total")
                                 .Help("Connections attached to reconnecting PTY sessions")
                                 .Register(reg(registry_))
                                 .Add({})),
      rpty_errors(prometheus::BuildCounter()
                      .Name("wsa_agent_reconnecting_pty_errors_total")
                      .Help("Reconnecting PTY connections or sessions that failed, by reason")
                      .Register(reg(registry_))),
      speedtests(prometheus::BuildCounter()
                     .Name("wsa_agent_speedtests_total")
                     .Help("Speed tests served, by direction (client's view) and result")
                     .Register(reg(registry_))),
      speedtest_bytes(prometheus::BuildCounter()
                          .Name("wsa_agent_speedtest_bytes_total")
                          .Help("Payload bytes moved by speed tests, by direction (client's view)")
                          .Register(reg(registry_))),
      api_requests(prometheus::BuildCounter()
                       .Name("wsa_agent_api_requests_total")
                       .Help("Requests to the agent HTTP API, by route and status code")
                       .Register(reg(registry_))),
      worker_queue_depth(prometheus::BuildGauge()
                             .Name("wsa_agent_worker_queue_depth")
                             .Help("Blocking jobs waiting for the agent's worker thread")
                             .Register(reg(registry_))
                             .Add({})),
      worker_refused(prometheus::BuildCounter()
                         .Name("wsa_agent_worker_refused_total")
                         .Help("Blocking jobs refused because the worker's queue was full")
                         .Register(reg(registry_))
                         .Add({})),
      info(prometheus::BuildGauge()
               .Name("wsa_agent_info")
               .Help("Always 1; labels describe the agent")
               .Register(reg(registry_))) {}

void AgentMetrics::runHooks() {
  for (auto& h : hooks_) h();
}

std::vector<prometheus::MetricFamily> AgentMetrics::collect() {
  runHooks();
  auto out = registry_->Collect();
  for (auto& c : collectors_) {
    for (auto& f : c()) out.push_back(std::move(f));
  }
  return out;
}

std::string AgentMetrics::serialize() {
  return prometheus::TextSerializer().Serialize(collect());
}

void AgentMetrics::toStats(wsa::agent::v1::Stats* stats) {
  for (const auto& fam : collect()) {
    for (const auto& m : fam.metric) {
      auto* out = stats->add_metrics();
      out->set_name(fam.name);
      if (fam.type == prometheus::MetricType::Counter) {
        out->set_type(wsa::agent::v1::Metric::TYPE_COUNTER);
        out->set_value(m.counter.value);
      } else if (fam.type == prometheus::MetricType::Gauge) {
        out->set_type(wsa::agent::v1::Metric::TYPE_GAUGE);
        out->set_value(m.gauge.value);
      } else if (fam.type == prometheus::MetricType::Histogram) {
        // Histograms travel as their count (a counter) — enough for dashboards of runs.
        out->set_name(fam.name + "_count");
        out->set_type(wsa::agent::v1::Metric::TYPE_COUNTER);
        out->set_value(static_cast<double>(m.histogram.sample_count));
      } else {
        stats->mutable_metrics()->RemoveLast();
        continue;
      }
      for (const auto& l : m.label) {
        auto* lab = out->add_labels();
        lab->set_name(l.name);
        lab->set_value(l.value);
      }
    }
  }
}

}  // namespace wsa::agent
