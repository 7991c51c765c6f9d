#pragma once
// Lifecycle states: only forward moves, each timestamped once, reported in order. The reporter
// routine resumes after a reconnect from the last state the server acknowledged, so nothing is
// re-emitted and nothing is skipped.
//
//   created → starting → start_timeout | start_error | ready → shutting_down
//           → shutdown_timeout | shutdown_error | off

#include <spdlog/logger.h>

#include <memory>
#include <vector>

#include "agent/api.h"
#include "agent/notifier.h"
#include "agent/supervisor.h"
#include "wsa/common/clock.h"

namespace wsa::agent {

class Lifecycle {
 public:
  struct Entry {
    v1::LifecycleState state;
    SystemTime changed_at;
  };

  explicit Lifecycle(Clock& clock);
  // Appends the state if it comes after the current one; otherwise ignores it (with a warning)
  // and returns false.
  bool set(v1::LifecycleState state);
  v1::LifecycleState current() const { return states_.back().state; }
  v1::LifecycleState lastReported() const { return states_[reported_].state; }
  const std::vector<Entry>& states() const { return states_; }
  bool allReported() const { return reported_ + 1 == states_.size(); }

  // Reporter side.
  const Entry* nextUnreported() const;
  void markReported();
  // Fires on set() (a new state to report) and on markReported().
  Notifier& changed() { return changed_; }

  static std::string name(v1::LifecycleState s);

 private:
  Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<Entry> states_;
  size_t reported_ = 0;  // index of the last acknowledged entry (0: the implicit created)
  Notifier changed_;
};

// Sends queued lifecycle states in order (kRemain routine).
std::shared_ptr<Routine> makeLifecycleReporter(Lifecycle& lifecycle, AgentApi& api);

}  // namespace wsa::agent
