#pragma once
// An ordered, bounded queue of reports (script timings, connection audits) and the kRemain
// routine that sends them. A report leaves the queue once the server acknowledged it; after a
// transient failure (unavailable, deadline, cancelled) it stays and the connection is retried;
// a report the server refuses for good is dropped with a warning. Past `capacity` the oldest
// report is dropped and counted.

#include <spdlog/logger.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "agent/api.h"
#include "agent/notifier.h"
#include "agent/supervisor.h"
#include "wsa/common/logging.h"

namespace wsa::agent {

inline bool isTransient(const RpcStatus& st) {
  return st.code == RpcStatus::kUnavailable || st.code == RpcStatus::kDeadlineExceeded ||
         st.code == RpcStatus::kCancelled || st.code == 2 /* UNKNOWN */ ||
         st.code == 8 /* RESOURCE_EXHAUSTED */ || st.code == 10 /* ABORTED */ ||
         st.code == 13 /* INTERNAL */;
}

template <typename Req>
class ReportQueue {
 public:
  using Send = std::function<void(AgentApi&, const Req&, std::function<void(const RpcStatus&)>)>;

  ReportQueue(std::string name, size_t capacity, Send send)
      : name_(std::move(name)),
        capacity_(capacity),
        send_(std::move(send)),
        log_(logging::get("reports")) {}

  void push(Req r) {
    if (queue_.size() >= capacity_) {
      queue_.pop_front();
      ++dropped_;
      log_->warn("{} queue full ({}); dropped the oldest report", name_, capacity_);
    }
    queue_.push_back(std::move(r));
    changed_.notify();
  }
  size_t size() const { return queue_.size(); }
  uint64_t dropped() const { return dropped_; }
  bool empty() const { return queue_.empty(); }
  Notifier& changed() { return changed_; }

  std::shared_ptr<Routine> makeRoutine(AgentApi& api);

 private:
  class Sender;
  std::string name_;
  size_t capacity_;
  Send send_;
  std::shared_ptr<spdlog::logger> log_;
  std::deque<Req> queue_;
  uint64_t dropped_ = 0;
  Notifier changed_;
};

template <typename Req>
class ReportQueue<Req>::Sender final : public BasicRoutine {
 public:
  Sender(ReportQueue& q, AgentApi& api) : q_(q), api_(api) {}

 private:
  void onStart() override {
    auto weak = this->weak_from_this();
    sub_ = q_.changed_.subscribe([this, weak] {
      if (auto s = weak.lock()) pump();
    });
    pump();
  }
  void onFinish() override { sub_.reset(); }

  void pump() {
    if (inFlight() || done() || finishIfStopping()) return;
    if (q_.queue_.empty()) return;
    beginCall();
    Req front = q_.queue_.front();
    size_t size_before = q_.queue_.size();
    uint64_t dropped_before = q_.dropped_;
    auto self = this->shared_from_this();
    q_.send_(api_, front, [this, self, size_before, dropped_before](const RpcStatus& st) {
      if (!endCall()) return;
      // If the queue overflowed meanwhile, the front we sent may already be gone.
      bool front_still_ours =
          q_.dropped_ == dropped_before && !q_.queue_.empty() && q_.queue_.size() >= size_before;
      if (st.ok() || !isTransient(st)) {
        if (!st.ok()) {
          q_.log_->warn("{}: the server refused a report ({}); dropping it", q_.name_, st.text());
        }
        if (front_still_ours) q_.queue_.pop_front();
        pump();
        return;
      }
      finish(makeError(q_.name_ + ": " + st.text()));
    });
  }

  ReportQueue& q_;
  AgentApi& api_;
  Notifier::Subscription sub_;
};

template <typename Req>
std::shared_ptr<Routine> ReportQueue<Req>::makeRoutine(AgentApi& api) {
  return std::make_shared<Sender>(*this, api);
}

}  // namespace wsa::agent
