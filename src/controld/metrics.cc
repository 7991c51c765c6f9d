#include "controld/metrics.h"

#include "wsa/common/metrics.h"

namespace wsa::controld {

void Metrics::rpc(const std::string& method, int code) {
  std::lock_guard lock(mu_);
  ++rpcs_[{method, code}];
}

void Metrics::streamQueueFull(const std::string& stream) {
  std::lock_guard lock(mu_);
  ++queue_full_[stream];
}

void Metrics::collect(metrics::Families& out) const {
  std::lock_guard lock(mu_);
  auto rpcs =
      out.counters("wsa_controld_rpcs_total", "gRPC calls handled, by method and status code");
  for (const auto& [key, n] : rpcs_) {
    rpcs.add(n, {{"code", std::to_string(key.second)}, {"method", key.first}});
  }
  out.counter("wsa_controld_auth_failures_total", "Calls refused for a missing or unknown token",
              auth_failures_.load());
  out.counter("wsa_controld_log_lines_stored_total", "Agent log lines stored", log_lines_.load());
  out.counter("wsa_controld_log_bytes_stored_total", "Agent log output bytes stored",
              log_bytes_.load());
  out.counter("wsa_controld_log_batches_over_budget_total",
              "Log batches refused because the agent's log budget is spent",
              log_over_budget_.load());
  out.counter("wsa_controld_log_lines_duplicate_total",
              "Re-sent log lines dropped because they were already stored", log_duplicates_.load());
  auto queue_full = out.counters("wsa_controld_stream_queue_full_total",
                                 "Messages dropped because a stream's send queue was full");
  for (const auto& [stream, n] : queue_full_) queue_full.add(n, {{"stream", stream}});
}

}  // namespace wsa::controld
