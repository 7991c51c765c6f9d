#pragma once
// What the gRPC services and the admin API share: configuration, store, hub, metrics and the
// token → identity map. Immutable after start except through the thread-safe members.

#include <spdlog/logger.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "controld/config.h"
#include "controld/hub.h"
#include "controld/metrics.h"
#include "controld/store.h"

namespace grpc {
class Service;
}
namespace wsa::metrics {
class Collectors;
}

namespace wsa::controld {

struct ServiceContext {
  const Config* config = nullptr;
  Store* store = nullptr;
  Hub* hub = nullptr;
  Metrics* metrics = nullptr;
  const metrics::Collectors* collectors = nullptr;  // what /metrics serves
  std::shared_ptr<spdlog::logger> log;
  std::string version;
  // SHA-256 (hex) of each token → who it authenticates. The tokens themselves are not kept
  // here and never logged.
  std::map<std::string, Principal> identities;
  std::map<std::string, const AgentConfig*> agent_configs;  // by agent id
  std::map<std::string, AgentRecord> agent_records;         // by agent id
  // Shutdown drains calls itself: new unary calls are refused once shutting_down is set, and
  // gRPC is shut down once inflight reaches zero (gRPC's own Shutdown would otherwise wait its
  // whole deadline for idle client connections).
  std::atomic<bool> shutting_down{false};
  std::atomic<int> inflight{0};

  uint64_t logBudgetFor(const std::string& agent_id) const {
    auto it = agent_configs.find(agent_id);
    if (it != agent_configs.end() && it->second->log_budget_bytes != 0) {
      return it->second->log_budget_bytes;
    }
    return config->log_budget_bytes;
  }
};

std::unique_ptr<grpc::Service> makeAgentService(ServiceContext& ctx);
std::unique_ptr<grpc::Service> makeOverlayService(ServiceContext& ctx);
class TicketRelay;
// controld --relay-only: Overlay.Relay on `relay` (tickets, no tokens); other calls UNIMPLEMENTED.
std::unique_ptr<grpc::Service> makeRelayOnlyService(ServiceContext& ctx, TicketRelay& relay);

}  // namespace wsa::controld
