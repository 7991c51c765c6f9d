#include "agent/metrics.h"

#include "wsa/agent/v1/stats.pb.h"

namespace wsa::agent {

std::vector<double> AgentMetrics::durationBuckets() {
  return {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
}

void AgentMetrics::observeScriptSeconds(const std::string& stage, double seconds) {
  script_seconds_.try_emplace(stage, durationBuckets()).first->second.observe(seconds);
}

void AgentMetrics::collectCounts(metrics::Families& out) const {
  // Labels in name order, as the registry these counts lived in wrote them.
  out.counter("wsa_agent_connect_attempts_total", "Connections to the control server attempted",
              connect_attempts);
  out.counter("wsa_agent_connect_failures_total",
              "Connections that ended with an error (then retried with backoff)", connect_failures);
  out.gauge("wsa_agent_connected", "1 while the agent holds a connection with a manifest",
            connected ? 1 : 0);
  auto routine = out.counters("wsa_agent_routine_errors_total",
                              "Errors that tore a connection down, by routine");
  for (const auto& [name, n] : routine_errors) routine.add(n, {{"routine", name}});
  auto scripts =
      out.counters("wsa_agent_scripts_executed_total", "Script runs by stage and outcome");
  for (const auto& [key, n] : scripts_executed) {
    scripts.add(n, {{"stage", key.first}, {"success", key.second}});
  }
  auto seconds = out.histograms("wsa_agent_script_duration_seconds", "Script run time by stage");
  for (const auto& [stage, h] : script_seconds_) seconds.add(h, {{"stage", stage}});
  auto startup =
      out.gauges("wsa_agent_startup_script_seconds", "Time the start scripts took, by outcome");
  for (const auto& [success, s] : startup_script_seconds) startup.add(s, {{"success", success}});
  auto md = out.counters("wsa_agent_metadata_collections_total",
                         "Metadata collections by result (ok, error, timeout)");
  for (const auto& [result, n] : metadata_collections) md.add(n, {{"result", result}});
  auto health = out.counters("wsa_agent_app_health_checks_total", "App health checks by result");
  for (const auto& [result, n] : app_health_checks) health.add(n, {{"result", result}});
  out.counter("wsa_agent_reconnecting_pty_connections_total",
              "Connections attached to reconnecting PTY sessions", rpty_connections);
  auto rpty = out.counters("wsa_agent_reconnecting_pty_errors_total",
                           "Reconnecting PTY connections or sessions that failed, by reason");
  for (const auto& [reason, n] : rpty_errors) rpty.add(n, {{"reason", reason}});
  auto tests = out.counters("wsa_agent_speedtests_total",
                            "Speed tests served, by direction (client's view) and result");
  for (const auto& [key, n] : speedtests) {
    tests.add(n, {{"direction", key.first}, {"result", key.second}});
  }
  auto bytes = out.counters("wsa_agent_speedtest_bytes_total",
                            "Payload bytes moved by speed tests, by direction (client's view)");
  for (const auto& [direction, n] : speedtest_bytes) bytes.add(n, {{"direction", direction}});
  auto api = out.counters("wsa_agent_api_requests_total",
                          "Requests to the agent HTTP API, by route and status code");
  for (const auto& [key, n] : api_requests)
    api.add(n, {{"code", key.second}, {"route", key.first}});
}

AgentMetrics::AgentMetrics() {
  collectors_.add([this](metrics::Families& out) { collectCounts(out); });
}

std::string AgentMetrics::serialize() const {
  return collectors_.text();
}

void AgentMetrics::toStats(wsa::agent::v1::Stats* stats) const {
  for (const auto& fam : collectors_.collect().take()) {
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
