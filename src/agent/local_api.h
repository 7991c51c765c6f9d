#pragma once
// The agent's loopback HTTP endpoints: Prometheus metrics (--prometheus-address) and debug
// routes (--debug-address).

#include <string>

#include "wsa/http/router.h"

namespace wsa::agent {

class Agent;
class AgentMetrics;

http::Router makeMetricsRouter(AgentMetrics& metrics);
// /debug/state, /debug/manifest (secrets removed, environment values redacted),
// /debug/logs (the agent's log file, last 10 MiB), /healthz.
http::Router makeDebugRouter(Agent& agent, AgentMetrics& metrics, std::string log_file);

}  // namespace wsa::agent
