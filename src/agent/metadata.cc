#include "agent/metadata.h"

#include <google/protobuf/util/time_util.h>
#include <signal.h>

#include <set>

#include "wsa/common/logging.h"

namespace wsa::agent {

using google::protobuf::util::TimeUtil;

class MetadataCollector::Collection : public std::enable_shared_from_this<Collection> {
 public:
  Collection(MetadataCollector& c, v1::MetadataDescription d)
      : c_(c), d_(std::move(d)), timer_(c.clock_.createTimer()) {}

  void start() {
    collected_at_ = c_.clock_.systemNow();
    auto weak = weak_from_this();
    exec::Process::Callbacks cb;
    cb.on_stdout = [weak](std::string_view data) {
      if (auto self = weak.lock()) self->output(data);
    };
    cb.on_eof = [weak](bool) {
      if (auto self = weak.lock()) {
        self->eof_ = true;
        self->maybeDone();
      }
    };
    cb.on_exit = [weak](exec::ExitStatus st) {
      if (auto self = weak.lock()) {
        self->status_ = st;
        self->exited_ = true;
        // Output still held by a background child is not waited for.
        if (!self->eof_) self->proc_->closePipes();
        self->maybeDone();
      }
    };
    exec::Command cmd = c_.factory_(d_.script());
    cmd.merge_stderr = true;
    auto p = exec::spawnProcess(c_.io_, cmd, std::move(cb));
    if (!p) {
      v1::MetadataResult r;
      *r.mutable_collected_at() = TimeUtil::NanosecondsToTimestamp(toUnixNanos(collected_at_));
      r.set_error("create cmd: " + p.error());
      finish(std::move(r), "error");
      return;
    }
    proc_ = *p;
    timer_->schedule(c_.timeoutFor(d_), [weak] {
      if (auto self = weak.lock()) {
        self->timed_out_ = true;
        self->proc_->signalGroup(SIGKILL);
        self->proc_->closePipes();
      }
    });
  }

  void kill() {
    if (proc_ && !done_) proc_->signalGroup(SIGKILL);
  }

 private:
  void output(std::string_view data) {
    total_ += data.size();
    size_t room = c_.options_.max_output - std::min(out_.size(), c_.options_.max_output);
    out_.append(data.substr(0, std::min(room, data.size())));
  }
  void maybeDone() {
    if (!exited_ || !eof_ || done_) return;
    timer_->cancel();
    v1::MetadataResult r;
    *r.mutable_collected_at() = TimeUtil::NanosecondsToTimestamp(toUnixNanos(collected_at_));
    r.set_value(out_);
    std::vector<std::string> errors;
    if (total_ > c_.options_.max_output) {
      errors.push_back("output truncated from " + std::to_string(total_) + " to " +
                       std::to_string(c_.options_.max_output) + " bytes");
    }
    std::string result = "ok";
    if (timed_out_) {
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(c_.timeoutFor(d_)).count();
      errors.push_back("run cmd: timed out after " + std::to_string(secs) + "s");
      result = "timeout";
    } else if (status_.code != 0) {
      errors.push_back("run cmd: " + status_.text());
      result = "error";
    }
    std::string err;
    for (const auto& e : errors) err += (err.empty() ? "" : "; ") + e;
    r.set_error(err);
    finish(std::move(r), result);
  }
  void finish(v1::MetadataResult r, const std::string& result) {
    done_ = true;
    ++c_.metrics_.metadata_collections[result];
    c_.latest_[d_.key()] = r;
    c_.unreported_[d_.key()] = std::move(r);
    auto self = shared_from_this();
    c_.in_flight_.erase(d_.key());
  }

  MetadataCollector& c_;
  v1::MetadataDescription d_;
  std::unique_ptr<Timer> timer_;
  std::shared_ptr<exec::Process> proc_;
  SystemTime collected_at_{};
  std::string out_;
  size_t total_ = 0;
  exec::ExitStatus status_;
  bool exited_ = false;
  bool eof_ = false;
  bool timed_out_ = false;
  bool done_ = false;
};

MetadataCollector::MetadataCollector(asio::io_context& io, Clock& clock, AgentMetrics& metrics,
                                     MetadataOptions options, MetadataCommandFactory factory)
    : io_(io),
      clock_(clock),
      metrics_(metrics),
      options_(options),
      factory_(std::move(factory)),
      log_(logging::get("metadata")) {}

MetadataCollector::~MetadataCollector() {
  auto flights = in_flight_;
  for (auto& [key, c] : flights) c->kill();
}

void MetadataCollector::setDescriptions(const std::vector<v1::MetadataDescription>& ds) {
  descriptions_ = ds;
  std::set<std::string> keys;
  for (const auto& d : ds) keys.insert(d.key());
  for (auto it = last_collected_.begin(); it != last_collected_.end();) {
    it = keys.count(it->first) > 0 ? std::next(it) : last_collected_.erase(it);
  }
  for (auto it = latest_.begin(); it != latest_.end();) {
    it = keys.count(it->first) > 0 ? std::next(it) : latest_.erase(it);
  }
  // A new connection (or server) gets every current value again.
  unreported_ = latest_;
}

Duration MetadataCollector::timeoutFor(const v1::MetadataDescription& d) const {
  if (d.timeout_seconds() > 0) return std::chrono::seconds(d.timeout_seconds());
  if (d.interval_seconds() > 0) return std::chrono::seconds(d.interval_seconds());
  auto tick_s = std::chrono::duration_cast<std::chrono::seconds>(options_.tick).count();
  if (tick_s > 0) return std::chrono::seconds(3 * tick_s);
  return std::chrono::seconds(5);
}

void MetadataCollector::collectDue() {
  auto now = clock_.now();
  for (const auto& d : descriptions_) {
    if (in_flight_.count(d.key()) > 0) continue;  // single flight per key
    auto last = last_collected_.find(d.key());
    if (last != last_collected_.end()) {
      if (d.interval_seconds() == 0) continue;  // once
      if (now - last->second < std::chrono::seconds(d.interval_seconds())) continue;
    }
    collect(d);
  }
}

void MetadataCollector::collect(const v1::MetadataDescription& d) {
  last_collected_[d.key()] = clock_.now();
  auto c = std::make_shared<Collection>(*this, d);
  in_flight_[d.key()] = c;
  c->start();
}

class MetadataCollector::Reporter final : public BasicRoutine {
 public:
  Reporter(MetadataCollector& c, AgentApi& api)
      : c_(c), api_(api), timer_(c.clock_.createTimer()) {}

 private:
  void onStart() override { tick(); }
  void onStop() override { timer_->cancel(); }
  void onFinish() override { timer_->cancel(); }

  void tick() {
    if (done() || stopping()) return;
    c_.collectDue();
    report();
    auto weak = weak_from_this();
    timer_->schedule(c_.options_.tick, [this, weak] {
      if (auto s = weak.lock()) tick();
    });
  }
  void report() {
    if (inFlight() || c_.unreported_.empty()) return;
    v1::BatchUpdateMetadataRequest req;
    for (auto& [key, r] : c_.unreported_) {
      auto* m = req.add_metadata();
      m->set_key(key);
      *m->mutable_result() = r;
    }
    auto sent = std::move(c_.unreported_);
    c_.unreported_.clear();
    beginCall();
    auto self = shared_from_this();
    api_.batchUpdateMetadata(req, [this, self, sent = std::move(sent)](
                                      const RpcStatus& st, const v1::BatchUpdateMetadataResponse&) {
      bool live = endCall();
      if (!st.ok()) {
        // Put back what was not delivered unless something newer arrived meanwhile.
        for (auto& [k, r] : sent) c_.unreported_.emplace(k, r);
        if (live) finish(makeError("report metadata: " + st.text()));
        return;
      }
      if (live) finishIfStopping();
    });
  }

  MetadataCollector& c_;
  AgentApi& api_;
  std::unique_ptr<Timer> timer_;
};

std::shared_ptr<Routine> MetadataCollector::makeRoutine(AgentApi& api) {
  return std::make_shared<Reporter>(*this, api);
}

}  // namespace wsa::agent
