#pragma once
// The agent's Prometheus metrics. Served on --prometheus-address and copied into Stats.metrics.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wsa/agent/v1/stats.pb.h"

namespace wsa::agent {

class AgentMetrics {
  // Declared first: the metric references below are built from it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  AgentMetrics();
  prometheus::Registry& registry() { return *registry_; }

  // Connection
  prometheus::Counter& connect_attempts;
  prometheus::Counter& connect_failures;
  prometheus::Gauge& connected;
  prometheus::Family<prometheus::Counter>& routine_errors;  // {routine}
  // Logs
  prometheus::Gauge& logs_queued_bytes;
  prometheus::Gauge& logs_queued_lines;
  prometheus::Counter& logs_sent;
  prometheus::Family<prometheus::Counter>& logs_dropped;  // {reason}
  // Scripts
  prometheus::Family<prometheus::Counter>& scripts_executed;      // {stage, success}
  prometheus::Family<prometheus::Histogram>& script_seconds;      // {stage}
  prometheus::Family<prometheus::Gauge>& startup_script_seconds;  // {success}
  // Metadata, app health, reports
  prometheus::Family<prometheus::Counter>& metadata_collections;  // {result}
  prometheus::Family<prometheus::Counter>& app_health_checks;     // {result}
  prometheus::Family<prometheus::Counter>& reports_dropped;       // {queue}
  prometheus::Gauge& lifecycle_state;
  // SSH
  prometheus::Family<prometheus::Gauge>& ssh_sessions;  // {type}, current
  prometheus::Counter& ssh_sessions_total;
  prometheus::Gauge& ssh_connections;
  prometheus::Counter& ssh_failed_connections;
  prometheus::Counter& ssh_sftp_sessions;
  // Reconnecting PTY
  prometheus::Gauge& rpty_sessions;
  prometheus::Gauge& rpty_attached;
  prometheus::Counter& rpty_connections_total;
  prometheus::Family<prometheus::Counter>& rpty_errors;  // {reason}
  // Speedtest and HTTP API
  prometheus::Family<prometheus::Counter>& speedtests;       // {direction, result}
  prometheus::Family<prometheus::Counter>& speedtest_bytes;  // {direction}
  prometheus::Family<prometheus::Counter>& api_requests;     // {route, code}
  // The worker thread for blocking work (log reads, /proc scans)
  prometheus::Gauge& worker_queue_depth;
  prometheus::Counter& worker_refused;
  prometheus::Family<prometheus::Gauge>& info;  // {version}

  // Hooks run before each scrape to refresh gauges from live state.
  void addCollectHook(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }
  // Families computed at scrape time by a component (the overlay), added to every scrape.
  void addCollector(std::function<std::vector<prometheus::MetricFamily>()> c) {
    collectors_.push_back(std::move(c));
  }
  // Prometheus text exposition.
  std::string serialize();
  // Counters and gauges as Stats.metrics.
  void toStats(wsa::agent::v1::Stats* stats);

  static prometheus::Histogram::BucketBoundaries durationBuckets();

 private:
  void runHooks();
  std::vector<prometheus::MetricFamily> collect();
  std::vector<std::function<void()>> hooks_;
  std::vector<std::function<std::vector<prometheus::MetricFamily>()>> collectors_;
};

}  // namespace wsa::agent
