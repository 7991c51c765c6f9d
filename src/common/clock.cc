#include "wsa/common/clock.h"

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <optional>

namespace wsa {

namespace {

class LoopTimer final : public Timer {
 public:
  explicit LoopTimer(asio::io_context& io) : state_(std::make_shared<State>(io)) {}
  ~LoopTimer() override { cancel(); }

  void schedule(Duration delay, std::function<void()> callback) override {
    auto st = state_;
    uint64_t gen = ++st->generation;
    st->armed = true;
    st->timer.expires_after(delay);
    st->timer.async_wait([st, gen, cb = std::move(callback)](std::error_code ec) {
      if (ec || gen != st->generation || !st->armed) return;
      st->armed = false;
      cb();
    });
  }
  void cancel() override {
    ++state_->generation;
    state_->armed = false;
    state_->timer.cancel();
  }
  bool armed() const override { return state_->armed; }

 private:
  struct State {
    explicit State(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    uint64_t generation = 0;
    bool armed = false;
  };
  std::shared_ptr<State> state_;
};

class LoopClock final : public Clock {
 public:
  explicit LoopClock(asio::io_context& io) : io_(io) {}
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  SystemTime systemNow() const override { return std::chrono::system_clock::now(); }
  std::unique_ptr<Timer> createTimer() override { return std::make_unique<LoopTimer>(io_); }

 private:
  asio::io_context& io_;
};

}  // namespace

std::unique_ptr<Clock> makeLoopClock(asio::io_context& io) {
  return std::make_unique<LoopClock>(io);
}

class ManualClock::ManualTimer final : public Timer {
 public:
  explicit ManualTimer(ManualClock* clock) : clock_(clock) {}
  ~ManualTimer() override { cancel(); }
  void schedule(Duration delay, std::function<void()> callback) override {
    cancel();
    if (delay < Duration::zero()) delay = Duration::zero();
    key_ = Key{clock_->now_ + delay, clock_->seq_++};
    callback_ = std::move(callback);
    clock_->pending_[*key_] = this;
  }
  void cancel() override {
    if (key_) {
      clock_->pending_.erase(*key_);
      key_.reset();
    }
    callback_ = nullptr;
  }
  bool armed() const override { return key_.has_value(); }

  // Called by the clock when due.
  void fire() {
    key_.reset();
    auto cb = std::move(callback_);
    callback_ = nullptr;
    if (cb) cb();
  }

 private:
  ManualClock* clock_;
  std::optional<Key> key_;
  std::function<void()> callback_;
};

ManualClock::ManualClock()
    : now_(MonoTime() + std::chrono::hours(1000)),
      mono_base_(now_),
      system_base_(fromUnixNanos(int64_t(1800000000) * 1000000000)) {}

ManualClock::~ManualClock() = default;

std::unique_ptr<Timer> ManualClock::createTimer() {
  return std::make_unique<ManualTimer>(this);
}

void ManualClock::advance(Duration d) {
  MonoTime target = now_ + d;
  while (!pending_.empty() && pending_.begin()->first.when <= target) {
    auto it = pending_.begin();
    ManualTimer* t = it->second;
    now_ = it->first.when;
    pending_.erase(it);
    t->fire();
  }
  now_ = target;
}

std::optional<Duration> ManualClock::nextDeadline() const {
  if (pending_.empty()) return std::nullopt;
  return pending_.begin()->first.when - now_;
}

}  // namespace wsa
