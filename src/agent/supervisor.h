#pragma once
// Per-connection routines, supervised together (after the reference agent's routine manager).
//
// A Routine runs on the event loop until it finishes, fails, or is asked to stop. Each is marked
//   kStop   — stops when graceful shutdown begins (metadata, stats, banners, ...), or
//   kRemain — keeps running until the connection ends or hard shutdown (lifecycle, logs, ...).
// The first real error of any routine tears the whole connection down: every routine is asked
// to stop, and once all have exited the supervisor reports that error. An error from a routine
// the supervisor itself asked to stop is cancellation, not an error.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wsa/common/result.h"

namespace wsa::agent {

enum class Behavior { kStop, kRemain };

class Routine : public std::enable_shared_from_this<Routine> {
 public:
  using Exit = std::function<void(Status)>;
  virtual ~Routine() = default;
  // Starts the routine; it must call `exit` exactly once, on the loop, when it is done.
  virtual void start(Exit exit) = 0;
  // Asks the routine to finish soon. Idempotent. It still calls exit.
  virtual void stop() = 0;
};

// The bookkeeping most routines share: exit exactly once; a stop request completes at once when
// no call is in flight, else as soon as the call in flight returns.
class BasicRoutine : public Routine {
 public:
  void start(Exit exit) final {
    exit_ = std::move(exit);
    onStart();
  }
  void stop() final {
    if (done_ || stopping_) return;
    stopping_ = true;
    onStop();
    if (!in_flight_) finish(Status::success());
  }

 protected:
  virtual void onStart() = 0;
  // Cancel timers and the like; called once, when stop() is first asked.
  virtual void onStop() {}
  // Release what the routine holds; called once, just before exit.
  virtual void onFinish() {}

  void beginCall() { in_flight_ = true; }
  // A call returned. False when the reply must be ignored (the routine already exited).
  bool endCall() {
    in_flight_ = false;
    return !done_;
  }
  bool inFlight() const { return in_flight_; }
  bool stopping() const { return stopping_; }
  bool done() const { return done_; }
  void finish(Status st) {
    if (done_) return;
    done_ = true;
    onFinish();
    auto e = std::move(exit_);
    e(std::move(st));
  }
  // After a successful reply: exits if a stop was asked meanwhile. True if it did.
  bool finishIfStopping() {
    if (!stopping_) return false;
    finish(Status::success());
    return true;
  }

 private:
  Exit exit_;
  bool in_flight_ = false;
  bool stopping_ = false;
  bool done_ = false;
};

// A routine with nothing to do: it runs until asked to stop (a placeholder that keeps the
// routine list the same whatever is enabled).
class IdleRoutine final : public BasicRoutine {
 protected:
  void onStart() override {}
};

// A routine from two lambdas, for small ones.
std::shared_ptr<Routine> makeRoutine(std::function<void(Routine::Exit)> start,
                                     std::function<void()> stop);

class Supervisor {
 public:
  struct Hooks {
    // Once, after every routine has exited: the first real error, or ok.
    std::function<void(Status)> on_done;
    std::function<void(const std::string& name, const Status& exit, bool requested)> on_exit;
  };

  explicit Supervisor(Hooks hooks) : hooks_(std::move(hooks)) {}
  void add(std::string name, Behavior behavior, std::shared_ptr<Routine> routine);
  void start();
  // Graceful shutdown began: stop the kStop routines, keep the kRemain ones.
  void beginGracefulShutdown();
  // Tear down: stop everything.
  void stopAll();
  bool done() const { return done_; }
  size_t running() const;
  std::vector<std::string> runningNames() const;

 private:
  struct Entry {
    std::string name;
    Behavior behavior;
    std::shared_ptr<Routine> routine;
    bool running = false;
    bool stop_requested = false;
  };
  void onExit(size_t index, const Status& status);
  void maybeDone();
  void stopEntry(Entry& e);

  Hooks hooks_;
  std::vector<Entry> entries_;
  bool started_ = false;
  bool tearing_down_ = false;
  bool graceful_ = false;
  bool done_ = false;
  Status first_error_;
};

// A one-shot gate: complete() once; wait() callbacks run when it completes (at once if it has).
// Completing twice is a no-op; waiters get the status of the first completion.
class Checkpoint {
 public:
  void complete(Status status);
  void wait(std::function<void(const Status&)> callback);
  bool completed() const { return completed_; }
  const Status& status() const { return status_; }

 private:
  bool completed_ = false;
  Status status_;
  std::vector<std::function<void(const Status&)>> waiters_;
};

}  // namespace wsa::agent
