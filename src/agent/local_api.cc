#include "agent/local_api.h"

#include "agent/agent.h"
#include "agent/http_api.h"
#include "agent/metrics.h"

namespace wsa::agent {

http::Router makeMetricsRouter(AgentMetrics& metrics) {
  http::Router r;
  r.addSync("GET", "/metrics", [&metrics](http::Request&) { return metricsResponse(metrics); });
  r.addSync("GET", "/", [&metrics](http::Request&) { return metricsResponse(metrics); });
  return r;
}

http::Router makeDebugRouter(Agent& agent, AgentMetrics& metrics, std::string log_file,
                             Worker* worker, std::function<std::string()> overlay_state) {
  http::Router r;
  if (overlay_state) {
    r.addSync("GET", "/debug/overlay", [overlay_state = std::move(overlay_state)](http::Request&) {
      return http::Response::json(200, overlay_state());
    });
  }
  r.addSync("GET", "/healthz",
            [](http::Request&) { return http::Response::json(200, "{\"status\":\"ok\"}\n"); });
  r.addSync("GET", "/debug/state",
            [&agent](http::Request&) { return http::Response::json(200, agent.debugState()); });
  addDebugRoutes(
      r, [&agent] { return agent.debugManifest(); }, metrics, std::move(log_file), worker);
  return r;
}

}  // namespace wsa::agent
