#include "controld/metrics.h"

#include <prometheus/text_serializer.h>

namespace wsa::controld {

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      rpcs_(prometheus::BuildCounter()
                .Name("wsa_controld_rpcs_total")
                .Help("gRPC calls handled, by method and status code")
                .Register(*registry_)),
      auth_failures_(prometheus::BuildCounter()
                         .Name("wsa_controld_auth_failures_total")
                         .Help("Calls refused for a missing or unknown token")
                         .Register(*registry_)
                         .Add({})),
      connected_agents_(prometheus::BuildGauge()
                            .Name("wsa_controld_connected_agents")
                            .Help("Agents with an open event stream")
                            .Register(*registry_)
                            .Add({})),
      log_lines_(prometheus::BuildCounter()
                     .Name("wsa_controld_log_lines_stored_total")
                     .Help("Agent log lines stored")
                     .Register(*registry_)
                     .Add({})),
      log_bytes_(prometheus::BuildCounter()
                     .Name("wsa_controld_log_bytes_stored_total")
                     .Help("Agent log output bytes stored")
                     .Register(*registry_)
                     .Add({})),
      log_over_budget_(prometheus::BuildCounter()
                           .Name("wsa_controld_log_batches_over_budget_total")
                           .Help("Log batches refused because the agent's log budget is spent")
                           .Register(*registry_)
                           .Add({})),
      log_duplicates_(prometheus::BuildCounter()
                          .Name("wsa_controld_log_lines_duplicate_total")
                          .Help("Re-sent log lines dropped because they were already stored")
                          .Register(*registry_)
                          .Add({})),
      queue_full_(prometheus::BuildCounter()
                      .Name("wsa_controld_stream_queue_full_total")
                      .Help("Messages dropped because a stream's send queue was full")
                      .Register(*registry_)),
      relay_(prometheus::BuildCounter()
                 .Name("wsa_controld_relay_packets_total")
                 .Help("Relay packets by outcome")
                 .Register(*registry_)) {}

void Metrics::rpc(const std::string& method, int code) {
  rpcs_.Add({{"method", method}, {"code", std::to_string(code)}}).Increment();
}

void Metrics::syncHub(const HubCounters& c) {
  std::lock_guard lock(mu_);
  auto add = [&](const char* result, uint64_t now, uint64_t& before) {
    auto& counter = relay_.Add({{"result", result}});
    if (now > before) counter.Increment(static_cast<double>(now - before));
    before = now;
  };
  add("forwarded", c.relay_forwarded, synced_.relay_forwarded);
  add("no_route", c.relay_no_route, synced_.relay_no_route);
  add("denied", c.relay_denied, synced_.relay_denied);
  add("queue_full", c.relay_queue_full, synced_.relay_queue_full);
}

std::string Metrics::serialize() {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace wsa::controld
