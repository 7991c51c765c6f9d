#pragma once
// controld's Prometheus metrics (served on the HTTP listener at /metrics).

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>
#include <string>

#include "controld/hub.h"

namespace wsa::controld {

class Metrics {
 public:
  Metrics();
  prometheus::Registry& registry() { return *registry_; }

  void rpc(const std::string& method, int code);
  void authFailure() { auth_failures_.Increment(); }
  void setConnectedAgents(double n) { connected_agents_.Set(n); }
  void logsStored(uint64_t lines, uint64_t bytes) {
    log_lines_.Increment(static_cast<double>(lines));
    log_bytes_.Increment(static_cast<double>(bytes));
  }
  void logBatchOverBudget() { log_over_budget_.Increment(); }
  void logDuplicates(uint64_t n) { log_duplicates_.Increment(static_cast<double>(n)); }
  void streamQueueFull(const std::string& stream) {
    queue_full_.Add({{"stream", stream}}).Increment();
  }
  // Copies the hub's relay counters (monotonic) into the exported counters.
  void syncHub(const HubCounters& c);
  std::string serialize();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Counter& auth_failures_;
  prometheus::Gauge& connected_agents_;
  prometheus::Counter& log_lines_;
  prometheus::Counter& log_bytes_;
  prometheus::Counter& log_over_budget_;
  prometheus::Counter& log_duplicates_;
  prometheus::Family<prometheus::Counter>& queue_full_;
  prometheus::Family<prometheus::Counter>& relay_;
  std::mutex mu_;
  HubCounters synced_;
};

}  // namespace wsa::controld
