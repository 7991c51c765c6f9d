#pragma once
// The agent's loopback HTTP endpoints: Prometheus metrics (--prometheus-address) and debug
// routes (--debug-address).

#include <functional>
#include <string>

#include "wsa/http/router.h"

namespace wsa {
class Worker;
}

namespace wsa::agent {

class Agent;
class AgentMetrics;

http::Router makeMetricsRouter(AgentMetrics& metrics);
// /debug/state, /debug/manifest (secrets removed, environment values redacted),
// /debug/logs (the agent's log file, last 10 MiB), /debug/overlay, /healthz.
// /debug/logs reads on `worker` when one is given.
// /debug/overlay answers with `overlay_state` (when given).
http::Router makeDebugRouter(Agent& agent, AgentMetrics& metrics, std::string log_file,
                             Worker* worker, std::function<std::string()> overlay_state = nullptr);

}  // namespace wsa::agent
