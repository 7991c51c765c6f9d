#include "agent/lifecycle.h"

#include <google/protobuf/util/time_util.h>

#include "wsa/common/logging.h"
#include "wsa/common/strings.h"

namespace wsa::agent {

using google::protobuf::util::TimeUtil;

Lifecycle::Lifecycle(Clock& clock) : clock_(clock), log_(logging::get("lifecycle")) {
  states_.push_back({v1::LIFECYCLE_STATE_CREATED, clock_.systemNow()});
}

std::string Lifecycle::name(v1::LifecycleState s) {
  std::string n = v1::LifecycleState_Name(s);
  constexpr std::string_view kPrefix = "LIFECYCLE_STATE_";
  if (n.rfind(kPrefix, 0) == 0) n = n.substr(kPrefix.size());
  return toLower(n);
}

bool Lifecycle::set(v1::LifecycleState state) {
  if (state <= states_.back().state) {
    log_->warn("ignoring lifecycle move from {} to {}: states only move forward",
               name(states_.back().state), name(state));
    return false;
  }
  states_.push_back({state, clock_.systemNow()});
  log_->info("lifecycle: {}", name(state));
  changed_.notify();
  return true;
}

const Lifecycle::Entry* Lifecycle::nextUnreported() const {
  if (reported_ + 1 >= states_.size()) return nullptr;
  return &states_[reported_ + 1];
}

void Lifecycle::markReported() {
  if (reported_ + 1 < states_.size()) ++reported_;
  changed_.notify();
}

namespace {

class Reporter final : public BasicRoutine {
 public:
  Reporter(Lifecycle& lc, AgentApi& api) : lc_(lc), api_(api) {}

 private:
  void onStart() override {
    auto weak = weak_from_this();
    sub_ = lc_.changed().subscribe([this, weak] {
      if (auto self = weak.lock()) pump();
    });
    pump();
  }
  void onFinish() override { sub_.reset(); }

  void pump() {
    if (inFlight() || done() || finishIfStopping()) return;
    const Lifecycle::Entry* e = lc_.nextUnreported();
    if (e == nullptr) return;
    v1::UpdateLifecycleRequest req;
    req.mutable_lifecycle()->set_state(e->state);
    *req.mutable_lifecycle()->mutable_changed_at() =
        TimeUtil::NanosecondsToTimestamp(toUnixNanos(e->changed_at));
    beginCall();
    auto self = shared_from_this();
    api_.updateLifecycle(req, [this, self](const RpcStatus& st, const v1::Lifecycle&) {
      if (!endCall()) return;
      if (!st.ok()) {
        finish(makeError("report lifecycle: " + st.text()));
        return;
      }
      lc_.markReported();  // notifies, which pumps the next one (or exits when stopping)
      finishIfStopping();
    });
  }

  Lifecycle& lc_;
  AgentApi& api_;
  Notifier::Subscription sub_;
};

}  // namespace

std::shared_ptr<Routine> makeLifecycleReporter(Lifecycle& lifecycle, AgentApi& api) {
  return std::make_shared<Reporter>(lifecycle, api);
}

}  // namespace wsa::agent
