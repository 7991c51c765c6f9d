#pragma once
// The agent's HTTP API (port 4 on the overlay; `--api-listen` until then):
//   GET /                        {"message":"Hello from the wsa agent!","version":...}
//   GET /api/v0/listening-ports  {"ports":[{"process_name","network":"tcp","port"}]}
//   GET /debug/manifest, /debug/logs, /debug/prometheus (as on the loopback debug server)
// Blocking work (the /proc scan, reading the log) runs on a Worker; the loop only routes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "wsa/common/clock.h"
#include "wsa/common/worker.h"
#include "wsa/http/router.h"

namespace asio {
class io_context;
}

namespace wsa::agent {

class AgentMetrics;

// The manifest as /debug/manifest shows it (JSON, secrets removed).
using ManifestJson = std::function<std::string()>;

struct HttpApiOptions {
  std::string proc_root = "/proc";
  uint16_t min_port = 9;  // ports below are the agent's own overlay services
  // The agent's own listeners; read on the loop at each scan (filled in once they are bound).
  std::shared_ptr<const std::set<uint16_t>> hidden_ports;
  Duration cache_ttl = std::chrono::seconds(1);
  size_t max_waiters = 256;  // requests waiting for one scan
};

// Shared state of the listening-ports route: one scan at a time, its result cached.
class ListeningPortsCache;

http::Router makeHttpApiRouter(asio::io_context& io, Clock& clock, ManifestJson manifest,
                               AgentMetrics& metrics, std::string log_file, Worker& worker,
                               HttpApiOptions options);

// The debug routes both servers share; /debug/logs reads on `worker` when one is given.
void addDebugRoutes(http::Router& r, ManifestJson manifest, AgentMetrics& metrics,
                    std::string log_file, Worker* worker);
// Prometheus text exposition of the agent's metrics.
http::Response metricsResponse(AgentMetrics& metrics);

}  // namespace wsa::agent
