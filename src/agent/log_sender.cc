#include "agent/log_sender.h"

#include <google/protobuf/util/time_util.h>

#include "wsa/common/logging.h"
#include "wsa/common/strings.h"

namespace wsa::agent {

using google::protobuf::util::TimeUtil;

LogSender::LogSender(Clock& clock, std::string instance_id, LogSenderOptions options)
    : clock_(clock),
      instance_id_(std::move(instance_id)),
      options_(options),
      log_(logging::get("logs")) {}

bool LogSender::enqueue(const std::string& source_id, const std::string& source_name,
                        v1::LogLevel level, std::string output) {
  if (limit_exceeded_) {
    ++counters_.dropped_limit_exceeded;
    return false;
  }
  if (output.size() > options_.max_line_bytes) {
    ++counters_.dropped_line_too_long;
    warnDropped("a line longer than the per-line limit");
    return false;
  }
  Line line{clock_.systemNow(), sanitizeUtf8(output), level, 0};
  size_t c = cost(line);
  if (queued_bytes_ + c > options_.max_queued_bytes) {
    ++counters_.dropped_queue_full;
    warnDropped("the log queue is full");
    return false;
  }
  auto& src = sources_[source_id];
  if (src.name.empty()) src.name = source_name;
  line.sequence = src.next_sequence++;
  queued_bytes_ += c;
  ++queued_lines_;
  src.lines.push_back(std::move(line));
  changed_.notify();
  return true;
}

void LogSender::warnDropped(const char* why) {
  auto now = clock_.now();
  if (last_drop_warning_ != MonoTime{} && now - last_drop_warning_ < std::chrono::seconds(10)) {
    return;
  }
  last_drop_warning_ = now;
  log_->warn("dropping script output: {} ({} bytes queued, limit {}); local log files keep it", why,
             queued_bytes_, options_.max_queued_bytes);
}

void LogSender::flush(const std::string& source_id) {
  auto it = sources_.find(source_id);
  if (it != sources_.end()) it->second.flush_requested = true;
}

void LogSender::flushAll() {
  for (auto& [id, src] : sources_) {
    if (!src.lines.empty()) src.flush_requested = true;
  }
  changed_.notify();
}

LogSenderStats LogSender::stats() const {
  LogSenderStats s = counters_;
  s.queued_lines = queued_lines_;
  s.queued_bytes = queued_bytes_;
  s.limit_exceeded = limit_exceeded_;
  return s;
}

LogSender::Source* LogSender::due(std::string* id) {
  Source* best = nullptr;
  auto now = clock_.now();
  for (auto& [sid, src] : sources_) {
    if (src.lines.empty()) continue;
    bool is_due = src.flush_requested || now - src.last_flush >= options_.flush_interval;
    if (!is_due) continue;
    if (best == nullptr || src.last_flush < best->last_flush) {
      best = &src;
      *id = sid;
    }
  }
  return best;
}

void LogSender::acknowledge(const std::string& id, size_t count) {
  auto it = sources_.find(id);
  if (it == sources_.end()) return;
  auto& src = it->second;
  for (size_t i = 0; i < count && !src.lines.empty(); ++i) {
    queued_bytes_ -= cost(src.lines.front());
    --queued_lines_;
    ++counters_.sent_lines;
    src.lines.pop_front();
  }
  src.last_flush = clock_.now();
  if (src.lines.empty()) src.flush_requested = false;
  changed_.notify();
}

void LogSender::markLimitExceeded() {
  if (limit_exceeded_) return;
  limit_exceeded_ = true;
  counters_.dropped_limit_exceeded += queued_lines_;
  log_->warn(
      "the control server's log limit is exceeded: {} queued line(s) discarded, no more "
      "logs will be sent (local log files keep everything)",
      queued_lines_);
  for (auto& [id, src] : sources_) src.lines.clear();
  queued_bytes_ = 0;
  queued_lines_ = 0;
  changed_.notify();
}

class LogSendRoutine final : public BasicRoutine {
 public:
  LogSendRoutine(LogSender& s, AgentApi& api) : s_(s), api_(api), timer_(s.clock_.createTimer()) {}

 private:
  void onStart() override {
    if (s_.limit_exceeded_) {
      finish(Status::success());
      return;
    }
    tick();
  }
  void onStop() override { timer_->cancel(); }
  void onFinish() override { timer_->cancel(); }

  void tick() {
    if (done() || stopping()) return;
    send();
    if (!done() && !inFlight()) {
      auto weak = weak_from_this();
      timer_->schedule(s_.options_.wake_interval, [this, weak] {
        if (auto self = weak.lock()) tick();
      });
    }
  }

  void send() {
    std::string id;
    LogSender::Source* src = s_.due(&id);
    if (src == nullptr) return;
    v1::BatchCreateLogsRequest req;
    req.set_log_source_id(id);
    req.set_log_source_name(src->name);
    req.set_agent_instance_id(s_.instance_id_);
    size_t bytes = 0;
    size_t n = 0;
    for (const auto& line : src->lines) {
      size_t c = s_.cost(line);
      if (n > 0 && bytes + c > s_.options_.max_batch_bytes) break;
      auto* l = req.add_logs();
      *l->mutable_created_at() = TimeUtil::NanosecondsToTimestamp(toUnixNanos(line.created_at));
      l->set_output(line.output);
      l->set_level(line.level);
      l->set_sequence(line.sequence);
      bytes += c;
      ++n;
    }
    beginCall();
    auto self = shared_from_this();
    api_.batchCreateLogs(
        req, [this, self, id, n](const RpcStatus& st, const v1::BatchCreateLogsResponse& resp) {
          if (!endCall()) return;
          if (!st.ok()) {
            finish(makeError("send logs: " + st.text()));
            return;
          }
          if (resp.log_limit_exceeded()) {
            s_.markLimitExceeded();
            finish(Status::success());
            return;
          }
          s_.acknowledge(id, n);
          if (finishIfStopping()) return;
          // More may be due right away (a large backlog or other sources).
          tick();
        });
  }

  LogSender& s_;
  AgentApi& api_;
  std::unique_ptr<Timer> timer_;
};

std::shared_ptr<Routine> LogSender::makeRoutine(AgentApi& api) {
  return std::make_shared<LogSendRoutine>(*this, api);
}

}  // namespace wsa::agent
