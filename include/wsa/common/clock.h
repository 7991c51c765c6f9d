#pragma once
// Time for components that run on the event loop. Production uses the loop's timers; tests use
// ManualClock and advance time explicitly, so no test waits for real time to pass.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "wsa/common/time.h"

namespace asio {
class io_context;
}

namespace wsa {

using MonoTime = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

// A one-shot timer. The callback runs on the loop, at most once per schedule(), and never after
// cancel() or destruction.
class Timer {
 public:
  virtual ~Timer() = default;
  // Arms the timer, replacing any pending schedule.
  virtual void schedule(Duration delay, std::function<void()> callback) = 0;
  virtual void cancel() = 0;
  virtual bool armed() const = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;
  virtual SystemTime systemNow() const = 0;
  virtual std::unique_ptr<Timer> createTimer() = 0;
};

// Timers on an Asio io_context; now() is steady_clock.
std::unique_ptr<Clock> makeLoopClock(asio::io_context& io);

// A clock that only moves when told to. Timers fire inside advance(), in deadline order (ties in
// scheduling order), each seeing now() equal to its deadline.
class ManualClock final : public Clock {
 public:
  ManualClock();
  ~ManualClock() override;
  MonoTime now() const override { return now_; }
  SystemTime systemNow() const override { return system_base_ + (now_ - mono_base_); }
  std::unique_ptr<Timer> createTimer() override;

  void advance(Duration d);
  // Runs timers due at the current time (after a callback scheduled a zero delay).
  void runDue() { advance(Duration::zero()); }
  size_t pendingTimers() const { return pending_.size(); }
  // Time until the next pending timer, if any.
  std::optional<Duration> nextDeadline() const;

 private:
  class ManualTimer;
  friend class ManualTimer;
  struct Key {
    MonoTime when;
    uint64_t seq;
    bool operator<(const Key& o) const { return when != o.when ? when < o.when : seq < o.seq; }
  };
  MonoTime now_;
  MonoTime mono_base_;
  SystemTime system_base_;
  uint64_t seq_ = 0;
  std::map<Key, ManualTimer*> pending_;
};

}  // namespace wsa
