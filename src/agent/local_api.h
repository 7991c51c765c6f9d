#pragma once
// The agent's loopback HTTP endpoints: Prometheus metrics (--prometheus-address) and debug
// routes (--debug-address).

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
// /debug/logs (the agent's log file, last 10 MiB), /healthz.
// /debug/logs reads on `worker` when one is given.
http::Router makeDebugRouter(Agent& agent, AgentMetrics& metrics, std::string log_file,
                             Worker* worker);

}  // namespace wsa::agent
