#pragma once
// The agent's metrics. Its components count in the plain fields below (everything that counts
// here runs on the loop); collectors added by the components read their live state (queues,
// sessions, the overlay) at scrape time. A scrape is the union: these counts, then each collector
// in the order added. Served on --prometheus-address and copied into Stats.metrics.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "wsa/common/metrics.h"

namespace wsa::agent::v1 {
class Stats;
}

namespace wsa::agent {

class AgentMetrics {
 public:
  AgentMetrics();
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  // Connection
  uint64_t connect_attempts = 0;
  uint64_t connect_failures = 0;
  bool connected = false;
  std::map<std::string, uint64_t> routine_errors;  // by routine
  // Scripts
  std::map<std::pair<std::string, std::string>, uint64_t> scripts_executed;  // (stage, success)
  std::map<std::string, double> startup_script_seconds;                      // by success
  // Metadata, app health
  std::map<std::string, uint64_t> metadata_collections;  // by result
  std::map<std::string, uint64_t> app_health_checks;     // by result
  // Reconnecting PTY, speed test, HTTP API
  uint64_t rpty_connections = 0;
  std::map<std::string, uint64_t> rpty_errors;                           // by reason
  std::map<std::pair<std::string, std::string>, uint64_t> speedtests;    // (direction, result)
  std::map<std::string, uint64_t> speedtest_bytes;                       // by direction
  std::map<std::pair<std::string, std::string>, uint64_t> api_requests;  // (route, code)

  // A script run's duration, by stage (durationBuckets()).
  void observeScriptSeconds(const std::string& stage, double seconds);
  static std::vector<double> durationBuckets();

  // A component's live state, read at every scrape.
  void addCollector(metrics::Collector c) { collectors_.add(std::move(c)); }
  // Prometheus text exposition.
  std::string serialize() const;
  // Counters and gauges as Stats.metrics (a histogram as its _count).
  void toStats(wsa::agent::v1::Stats* stats) const;

 private:
  void collectCounts(metrics::Families& out) const;
  std::map<std::string, metrics::Histogram> script_seconds_;  // by stage
  metrics::Collectors collectors_;
};

}  // namespace wsa::agent
