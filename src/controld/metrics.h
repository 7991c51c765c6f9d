#pragma once
// controld's own counts (gRPC calls, authentication, logs, stream queues) and their collector;
// /metrics serves it with the hub's (Hub::collectMetrics: relay packets, connected agents).
// Counted from gRPC threads: atomics, and a mutex for the labelled counts.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace wsa::metrics {
class Families;
}

namespace wsa::controld {

class Metrics {
 public:
  void rpc(const std::string& method, int code);
  void authFailure() { ++auth_failures_; }
  void logsStored(uint64_t lines, uint64_t bytes) {
    log_lines_ += lines;
    log_bytes_ += bytes;
  }
  void logBatchOverBudget() { ++log_over_budget_; }
  void logDuplicates(uint64_t n) { log_duplicates_ += n; }
  void streamQueueFull(const std::string& stream);

  // The collector (any thread).
  void collect(metrics::Families& out) const;

 private:
  std::atomic<uint64_t> auth_failures_{0};
  std::atomic<uint64_t> log_lines_{0};
  std::atomic<uint64_t> log_bytes_{0};
  std::atomic<uint64_t> log_over_budget_{0};
  std::atomic<uint64_t> log_duplicates_{0};
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> rpcs_;  // (method, code)
  std::map<std::string, uint64_t> queue_full_;            // by stream
};

}  // namespace wsa::controld
