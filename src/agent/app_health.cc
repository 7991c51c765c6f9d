#include "agent/app_health.h"

#include "wsa/common/logging.h"

namespace wsa::agent {

AppHealth::AppHealth(Clock& clock, AgentMetrics& metrics, HealthProbe probe,
                     Duration report_interval)
    : clock_(clock),
      metrics_(metrics),
      probe_(std::move(probe)),
      report_interval_(report_interval),
      log_(logging::get("apphealth")) {}

void AppHealth::setApps(const std::vector<v1::App>& apps) {
  std::map<std::string, State> next;
  for (const auto& a : apps) {
    if (a.health() == v1::APP_HEALTH_DISABLED || a.healthcheck().url().empty() ||
        a.healthcheck().interval_seconds() == 0) {
      continue;
    }
    State s;
    s.app = a;
    s.health = a.health() == v1::APP_HEALTH_UNSPECIFIED ? v1::APP_HEALTH_INITIALIZING : a.health();
    auto old = apps_.find(a.id());
    if (old != apps_.end()) {
      s.health = old->second.health;
      s.failures = old->second.failures;
    }
    next[a.id()] = std::move(s);
  }
  apps_ = std::move(next);
  dirty_ = true;  // a new connection reports the current map
}

std::map<std::string, v1::AppHealth> AppHealth::health() const {
  std::map<std::string, v1::AppHealth> out;
  for (const auto& [id, s] : apps_) out[id] = s.health;
  return out;
}

void AppHealth::record(const std::string& id, bool ok, const std::string& detail) {
  auto it = apps_.find(id);
  if (it == apps_.end()) return;
  auto& s = it->second;
  ++metrics_.app_health_checks[ok ? "healthy" : "failed"];
  v1::AppHealth before = s.health;
  if (ok) {
    s.failures = 0;
    s.health = v1::APP_HEALTH_HEALTHY;
  } else {
    if (s.failures < s.app.healthcheck().threshold()) {
      ++s.failures;
    } else {
      s.health = v1::APP_HEALTH_UNHEALTHY;
    }
  }
  if (s.health != before) {
    dirty_ = true;
    log_->info("app {} is {}{}", s.app.slug(),
               s.health == v1::APP_HEALTH_HEALTHY ? "healthy" : "unhealthy",
               ok ? "" : " (" + detail + ")");
  }
}

class AppHealth::Checker final : public BasicRoutine {
 public:
  Checker(AppHealth& h, AgentApi& api) : h_(h), api_(api), report_timer_(h.clock_.createTimer()) {}

 private:
  struct Probe {
    std::unique_ptr<Timer> timer;
    std::unique_ptr<HttpGet> get;
  };

  void onStart() override {
    if (h_.apps_.empty()) {
      finish(Status::success());
      return;
    }
    for (auto& [id, s] : h_.apps_) {
      probes_[id].timer = h_.clock_.createTimer();
      schedule(id, Duration::zero());
    }
    reportTick();
  }
  void onStop() override { cancelAll(); }
  void onFinish() override { cancelAll(); }
  void cancelAll() {
    for (auto& [id, p] : probes_) {
      p.timer->cancel();
      p.get.reset();
    }
    report_timer_->cancel();
  }

  void schedule(const std::string& id, Duration delay) {
    auto weak = weak_from_this();
    probes_[id].timer->schedule(delay, [this, weak, id] {
      if (auto s = weak.lock()) probe(id);
    });
  }
  void probe(const std::string& id) {
    if (stopping() || done()) return;
    auto it = h_.apps_.find(id);
    if (it == h_.apps_.end()) return;
    auto interval = std::chrono::seconds(it->second.app.healthcheck().interval_seconds());
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(interval) -
                   std::chrono::milliseconds(1);
    auto weak = weak_from_this();
    probes_[id].get =
        h_.probe_(it->second.app.healthcheck().url(), timeout, [this, weak, id](Result<int> r) {
          auto s = weak.lock();
          if (!s || stopping() || done()) return;
          bool ok = r.ok() && *r < 500;
          h_.record(id, ok, r.ok() ? "status " + std::to_string(*r) : r.error());
        });
    schedule(id, interval);
  }
  void reportTick() {
    if (stopping() || done()) return;
    if (h_.dirty_ && !inFlight()) {
      v1::BatchUpdateAppHealthRequest req;
      for (const auto& [id, s] : h_.apps_) {
        auto* u = req.add_updates();
        u->set_id(id);
        u->set_health(s.health);
      }
      h_.dirty_ = false;
      beginCall();
      auto self = shared_from_this();
      api_.batchUpdateAppHealths(
          req, [this, self](const RpcStatus& st, const v1::BatchUpdateAppHealthResponse&) {
            if (!endCall()) return;
            if (!st.ok()) {
              h_.dirty_ = true;
              if (isFatal(st)) {
                finish(makeError("report app health: " + st.text()));
                return;
              }
              h_.log_->warn("report app health: {}", st.text());
            }
            finishIfStopping();
          });
    }
    auto weak = weak_from_this();
    report_timer_->schedule(h_.report_interval_, [this, weak] {
      if (auto s = weak.lock()) reportTick();
    });
  }
  static bool isFatal(const RpcStatus& st) {
    return st.code == RpcStatus::kUnavailable || st.code == RpcStatus::kCancelled ||
           st.code == RpcStatus::kUnauthenticated;
  }

  AppHealth& h_;
  AgentApi& api_;
  std::map<std::string, Probe> probes_;
  std::unique_ptr<Timer> report_timer_;
};

std::shared_ptr<Routine> AppHealth::makeRoutine(AgentApi& api) {
  return std::make_shared<Checker>(*this, api);
}

}  // namespace wsa::agent
