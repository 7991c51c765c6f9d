#include "agent/local_api.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/metrics.h"
#include "wsa/common/logging.h"

namespace wsa::agent {

namespace {

constexpr off_t kMaxLogBytes = 10 << 20;

http::Response metricsResponse(AgentMetrics& m) {
  auto r = http::Response::text(200, m.serialize());
  r.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  return r;
}

}  // namespace

http::Router makeMetricsRouter(AgentMetrics& metrics) {
  http::Router r;
  r.addSync("GET", "/metrics", [&metrics](http::Request&) { return metricsResponse(metrics); });
  r.addSync("GET", "/", [&metrics](http::Request&) { return metricsResponse(metrics); });
  return r;
}

http::Router makeDebugRouter(Agent& agent, AgentMetrics& metrics, std::string log_file) {
  http::Router r;
  r.addSync("GET", "/healthz", [](http::Request&) {
    return http::Response::json(200, "{\"status\":\"ok\"}\n");
  });
  r.addSync("GET", "/debug/state",
            [&agent](http::Request&) { return http::Response::json(200, agent.debugState()); });
  r.addSync("GET", "/debug/manifest",
            [&agent](http::Request&) { return http::Response::json(200, agent.debugManifest()); });
  r.addSync("GET", "/debug/prometheus",
            [&metrics](http::Request&) { return metricsResponse(metrics); });
  r.addSync("GET", "/debug/logs", [log_file](http::Request&) {
    logging::flush();
    int fd = ::open(log_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return http::Response::error(404, "no log file at " + log_file);
    struct stat st {};
    ::fstat(fd, &st);
    off_t start = st.st_size > kMaxLogBytes ? st.st_size - kMaxLogBytes : 0;
    std::string body;
    body.resize(static_cast<size_t>(st.st_size - start));
    ssize_t n = ::pread(fd, body.data(), body.size(), start);
    ::close(fd);
    body.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return http::Response::text(200, std::move(body));
  });
  return r;
}

}  // namespace wsa::agent
