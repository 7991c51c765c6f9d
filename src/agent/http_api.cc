#include "agent/http_api.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <nlohmann/json.hpp>

#include "agent/listening_ports.h"
#include "agent/metrics.h"
#include "wsa/common/logging.h"
#include "wsa/version.h"

namespace wsa::agent {

namespace {

constexpr off_t kMaxLogBytes = 10 << 20;

http::Response readLogTail(const std::string& log_file) {
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
}

}  // namespace

http::Response metricsResponse(AgentMetrics& m) {
  auto r = http::Response::text(200, m.serialize());
  r.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  return r;
}

class ListeningPortsCache : public std::enable_shared_from_this<ListeningPortsCache> {
 public:
  ListeningPortsCache(asio::io_context& io, Clock& clock, Worker& worker, HttpApiOptions o)
      : io_(io), clock_(clock), worker_(worker), opts_(std::move(o)) {}

  void get(http::Responder respond) {
    if (have_ && clock_.now() - scanned_at_ < opts_.cache_ttl) {
      respond(cached_);
      return;
    }
    if (waiters_.size() >= opts_.max_waiters) {
      respond(http::Response::error(503, "too many requests waiting for a port scan"));
      return;
    }
    waiters_.push_back(std::move(respond));
    if (scanning_) return;
    scanning_ = true;
    std::weak_ptr<ListeningPortsCache> weak = shared_from_this();
    std::set<uint16_t> hidden;
    if (opts_.hidden_ports) hidden = *opts_.hidden_ports;
    asio::io_context& io = io_;
    bool queued = worker_.post(
        [weak, root = opts_.proc_root, min = opts_.min_port, hidden = std::move(hidden), &io] {
          auto ports = scanListeningPorts(root, min, hidden);
          http::Response resp;
          if (!ports) {
            logging::get("api")->warn("listening ports: {}", ports.error());
            resp = http::Response::error(500, "Could not scan for listening ports.");
          } else {
            nlohmann::json list = nlohmann::json::array();
            for (const auto& p : *ports) {
              list.push_back(
                  {{"process_name", p.process_name}, {"network", p.network}, {"port", p.port}});
            }
            resp = http::Response::json(200, nlohmann::json{{"ports", list}}.dump() + "\n");
          }
          asio::post(io, [weak, resp = std::move(resp)] {
            if (auto self = weak.lock()) self->done(resp);
          });
        });
    if (!queued) {
      scanning_ = false;
      done(http::Response::error(503, "the agent is busy; try again"), false);
    }
  }

 private:
  void done(const http::Response& resp, bool cache = true) {
    scanning_ = false;
    if (cache && resp.status == 200) {
      cached_ = resp;
      have_ = true;
      scanned_at_ = clock_.now();
    }
    auto waiters = std::move(waiters_);
    waiters_.clear();
    for (auto& w : waiters) w(resp);
  }

  asio::io_context& io_;
  Clock& clock_;
  Worker& worker_;
  HttpApiOptions opts_;
  std::vector<http::Responder> waiters_;
  http::Response cached_;
  MonoTime scanned_at_{};
  bool have_ = false;
  bool scanning_ = false;
};

void addDebugRoutes(http::Router& r, ManifestJson manifest, AgentMetrics& metrics,
                    std::string log_file, Worker* worker) {
  r.addSync("GET", "/debug/manifest", [manifest = std::move(manifest)](http::Request&) {
    return http::Response::json(200, manifest());
  });
  r.addSync("GET", "/debug/prometheus",
            [&metrics](http::Request&) { return metricsResponse(metrics); });
  r.add("GET", "/debug/logs", [log_file, worker](http::Request&, http::Responder respond) {
    logging::flush();
    if (worker == nullptr) {
      respond(readLogTail(log_file));
      return;
    }
    // The responder may be called from any thread.
    auto shared = std::make_shared<http::Responder>(std::move(respond));
    if (!worker->post([shared, log_file] { (*shared)(readLogTail(log_file)); })) {
      (*shared)(http::Response::error(503, "the agent is busy; try again"));
    }
  });
}

http::Router makeHttpApiRouter(asio::io_context& io, Clock& clock, ManifestJson manifest,
                               AgentMetrics& metrics, std::string log_file, Worker& worker,
                               HttpApiOptions options) {
  http::Router r;
  r.addSync("GET", "/", [](http::Request&) {
    return http::Response::json(
        200,
        nlohmann::json{{"message", "Hello from the wsa agent!"}, {"version", WSA_VERSION}}.dump() +
            "\n");
  });
  auto cache = std::make_shared<ListeningPortsCache>(io, clock, worker, std::move(options));
  r.add("GET", "/api/v0/listening-ports",
        [cache](http::Request&, http::Responder respond) { cache->get(std::move(respond)); });
  addDebugRoutes(r, std::move(manifest), metrics, std::move(log_file), &worker);
  return r;
}

}  // namespace wsa::agent
