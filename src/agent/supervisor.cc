#include "agent/supervisor.h"

namespace wsa::agent {

namespace {
class LambdaRoutine final : public Routine {
 public:
  LambdaRoutine(std::function<void(Exit)> start, std::function<void()> stop)
      : start_(std::move(start)), stop_(std::move(stop)) {}
  void start(Exit exit) override { start_(std::move(exit)); }
  void stop() override {
    if (stop_) stop_();
  }

 private:
  std::function<void(Exit)> start_;
  std::function<void()> stop_;
};
}  // namespace

std::shared_ptr<Routine> makeRoutine(std::function<void(Routine::Exit)> start,
                                     std::function<void()> stop) {
  return std::make_shared<LambdaRoutine>(std::move(start), std::move(stop));
}

void Supervisor::add(std::string name, Behavior behavior, std::shared_ptr<Routine> routine) {
  entries_.push_back({std::move(name), behavior, std::move(routine)});
}

void Supervisor::start() {
  started_ = true;
  if (entries_.empty()) {
    maybeDone();
    return;
  }
  for (size_t i = 0; i < entries_.size(); ++i) entries_[i].running = true;
  for (size_t i = 0; i < entries_.size(); ++i) {
    // Keep the routine alive for the duration of its start call.
    auto r = entries_[i].routine;
    bool skip = tearing_down_ || (graceful_ && entries_[i].behavior == Behavior::kStop);
    if (skip) {
      entries_[i].running = false;
      continue;
    }
    r->start([this, i](const Status& st) { onExit(i, st); });
  }
  maybeDone();
}

void Supervisor::stopEntry(Entry& e) {
  if (!e.running || e.stop_requested) return;
  e.stop_requested = true;
  auto r = e.routine;
  r->stop();
}

void Supervisor::beginGracefulShutdown() {
  graceful_ = true;
  for (auto& e : entries_) {
    if (e.behavior == Behavior::kStop) stopEntry(e);
  }
}

void Supervisor::stopAll() {
  tearing_down_ = true;
  for (auto& e : entries_) stopEntry(e);
  maybeDone();
}

void Supervisor::onExit(size_t index, const Status& status) {
  Entry& e = entries_[index];
  if (!e.running) return;  // a routine that exits twice is ignored
  e.running = false;
  bool requested = e.stop_requested || tearing_down_;
  if (hooks_.on_exit) hooks_.on_exit(e.name, status, requested);
  if (!status.ok() && !requested) {
    if (first_error_.ok()) first_error_ = makeError(e.name + ": " + status.error());
    if (!tearing_down_) stopAll();
  }
  maybeDone();
}

void Supervisor::maybeDone() {
  if (done_ || !started_) return;
  for (const auto& e : entries_) {
    if (e.running) return;
  }
  done_ = true;
  if (hooks_.on_done) hooks_.on_done(first_error_);
}

size_t Supervisor::running() const {
  size_t n = 0;
  for (const auto& e : entries_) n += e.running ? 1 : 0;
  return n;
}

std::vector<std::string> Supervisor::runningNames() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (e.running) out.push_back(e.name);
  }
  return out;
}

void Checkpoint::complete(Status status) {
  if (completed_) return;
  completed_ = true;
  status_ = std::move(status);
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) w(status_);
}

void Checkpoint::wait(std::function<void(const Status&)> callback) {
  if (completed_) {
    callback(status_);
    return;
  }
  waiters_.push_back(std::move(callback));
}

}  // namespace wsa::agent
