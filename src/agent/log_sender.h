#pragma once
// Script logs on their way to the control server.
//
// Lines are queued per log source, in order, each with a sequence number (per agent process and
// source) so the server can drop re-sent lines: delivery is exactly once across reconnects.
// The sender routine wakes four times a second and sends a source's batch when its last flush
// is a second old (or a flush was requested), oldest-flushed source first; one batch is in
// flight at a time and lines leave the queue only once acknowledged. The queue is bounded
// (1 MiB of output by default): past it new lines are dropped, counted and warned about. After
// the server answers log_limit_exceeded, queues are discarded and nothing more is sent (local
// log files keep everything).

#include <spdlog/logger.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "agent/api.h"
#include "agent/notifier.h"
#include "agent/supervisor.h"
#include "wsa/common/clock.h"

namespace wsa::agent {

struct LogSenderOptions {
  size_t max_queued_bytes = 1u << 20;
  size_t max_batch_bytes = 1u << 20;
  size_t max_line_bytes = (1u << 20) - 64;
  Duration flush_interval = std::chrono::seconds(1);
  Duration wake_interval = std::chrono::milliseconds(250);
  // Counted per line for the bounds (protobuf framing and timestamps).
  size_t per_line_overhead = 21;
};

struct LogSenderStats {
  uint64_t queued_lines = 0;
  uint64_t queued_bytes = 0;
  uint64_t sent_lines = 0;
  uint64_t dropped_queue_full = 0;
  uint64_t dropped_line_too_long = 0;
  uint64_t dropped_limit_exceeded = 0;
  bool limit_exceeded = false;
};

class LogSender {
 public:
  LogSender(Clock& clock, std::string instance_id, LogSenderOptions options = {});

  // Queues one line (without its newline). Returns false if it was dropped.
  bool enqueue(const std::string& source_id, const std::string& source_name, v1::LogLevel level,
               std::string output);
  // Asks for the source's lines to be sent at the next wake-up.
  void flush(const std::string& source_id);
  // Asks for every source to be sent at once (shutdown).
  void flushAll();
  bool empty() const { return queued_lines_ == 0; }
  bool limitExceeded() const { return limit_exceeded_; }
  LogSenderStats stats() const;
  const std::string& instanceId() const { return instance_id_; }
  // Fires when lines are queued, sent, or dropped by the limit.
  Notifier& changed() { return changed_; }
  const LogSenderOptions& options() const { return options_; }

  // The kRemain routine that sends queued lines over `api`.
  std::shared_ptr<Routine> makeRoutine(AgentApi& api);

 private:
  friend class LogSendRoutine;
  struct Line {
    SystemTime created_at;
    std::string output;
    v1::LogLevel level;
    uint64_t sequence;
  };
  struct Source {
    std::string name;
    std::deque<Line> lines;
    uint64_t next_sequence = 1;
    MonoTime last_flush{};
    bool flush_requested = false;
  };
  size_t cost(const Line& l) const { return l.output.size() + options_.per_line_overhead; }
  // Picks the source to send next, or nullptr.
  Source* due(std::string* id);
  void acknowledge(const std::string& id, size_t count);
  void markLimitExceeded();
  void warnDropped(const char* why);

  Clock& clock_;
  std::string instance_id_;
  LogSenderOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, Source> sources_;
  size_t queued_bytes_ = 0;
  size_t queued_lines_ = 0;
  bool limit_exceeded_ = false;
  LogSenderStats counters_;
  MonoTime last_drop_warning_{};
  Notifier changed_;
};

}  // namespace wsa::agent
