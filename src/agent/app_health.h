#pragma once
// App health checks: each app with a health-check URL (interval > 0) is probed every interval
// with a timeout just under it. A status below 500 is healthy and resets the failure count;
// errors and 5xx count failures, and the app turns unhealthy once failures exceed the
// threshold (threshold consecutive failures are tolerated). Changes are reported, the whole
// map at a time, at most once a second.

#include <spdlog/logger.h>

#include <map>
#include <memory>
#include <string>

#include "agent/api.h"
#include "agent/http_get.h"
#include "agent/metrics.h"
#include "agent/supervisor.h"
#include "wsa/common/clock.h"

namespace wsa::agent {

using HealthProbe = std::function<std::unique_ptr<HttpGet>(
    const std::string& url, std::chrono::milliseconds timeout, std::function<void(Result<int>)>)>;

class AppHealth {
 public:
  AppHealth(Clock& clock, AgentMetrics& metrics, HealthProbe probe,
            Duration report_interval = std::chrono::seconds(1));
  void setApps(const std::vector<v1::App>& apps);
  std::shared_ptr<Routine> makeRoutine(AgentApi& api);
  std::map<std::string, v1::AppHealth> health() const;

  class Checker;

 private:
  struct State {
    v1::App app;
    v1::AppHealth health = v1::APP_HEALTH_INITIALIZING;
    uint32_t failures = 0;
  };
  void record(const std::string& id, bool ok, const std::string& detail);

  Clock& clock_;
  AgentMetrics& metrics_;
  HealthProbe probe_;
  Duration report_interval_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, State> apps_;
  bool dirty_ = false;
};

}  // namespace wsa::agent
