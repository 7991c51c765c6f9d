#pragma once
// A bounded table of UDP flows (or anything that lives while it is used): at most `max_flows`
// entries, keyed by a string; at the bound the least recently used entry is evicted, and an
// entry unused for `idle_timeout` expires. Both UDP forwarders use it: the agent's (overlay
// datagrams to the workspace's loopback) and `wsa forward --udp` (local datagrams to the agent).
//
// Time is the injected Clock's: one timer, armed for the oldest entry's expiry, so a lookup
// (which marks the entry used) costs no timer operation. Single-threaded (the loop's).

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "wsa/common/clock.h"

namespace wsa::net {

struct FlowTableOptions {
  size_t max_flows = 1024;
  Duration idle_timeout = std::chrono::seconds(60);
};

struct FlowTableStats {
  uint64_t opened = 0;
  uint64_t evicted = 0;  // the least recently used, to make room at the bound
  uint64_t expired = 0;  // idle for idle_timeout
  uint64_t closed = 0;   // erased by the owner
};

// How an entry left the table.
enum class FlowEnd { kEvicted, kExpired, kClosed, kCleared };

template <typename Value>
class FlowTable {
 public:
  // Called once per entry that leaves the table, after it has left (the table may be used from
  // here); the value is destroyed when this returns.
  using OnEnd = std::function<void(const std::string& key, Value& value, FlowEnd why)>;

  FlowTable(Clock& clock, FlowTableOptions options, OnEnd on_end = nullptr)
      : clock_(clock), options_(options), on_end_(std::move(on_end)), timer_(clock.createTimer()) {
    if (options_.max_flows == 0) options_.max_flows = 1;
  }
  ~FlowTable() { timer_->cancel(); }
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // The entry for `key`, marked used now; null when there is none.
  Value* find(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    it->second->last_used = clock_.now();
    return &it->second->value;
  }
  // The entry for `key` without marking it used.
  Value* peek(const std::string& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &it->second->value;
  }

  // Adds an entry for a key that has none (an existing one is replaced, ending as kClosed); at
  // the bound the least recently used entry is evicted first.
  Value& insert(const std::string& key, Value value) {
    erase(key);
    while (lru_.size() >= options_.max_flows) {
      stats_.evicted++;
      end(std::prev(lru_.end()), FlowEnd::kEvicted);
    }
    lru_.push_front(Entry{key, std::move(value), clock_.now()});
    index_[key] = lru_.begin();
    stats_.opened++;
    if (!timer_->armed()) arm();
    return lru_.front().value;
  }

  // Removes the entry for `key` (FlowEnd::kClosed); false when there is none.
  bool erase(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    stats_.closed++;
    end(it->second, FlowEnd::kClosed);
    return true;
  }

  // Removes every entry (FlowEnd::kCleared), most recently used first.
  void clear() {
    timer_->cancel();
    while (!lru_.empty()) end(lru_.begin(), FlowEnd::kCleared);
  }

  size_t size() const { return lru_.size(); }
  bool empty() const { return lru_.empty(); }
  const FlowTableStats& stats() const { return stats_; }
  const FlowTableOptions& options() const { return options_; }

  // Every entry, most recently used first.
  template <typename F>
  void forEach(F&& f) {
    for (auto& e : lru_) f(e.key, e.value);
  }

 private:
  struct Entry {
    std::string key;
    Value value;
    MonoTime last_used;
  };
  using Iter = typename std::list<Entry>::iterator;

  void end(Iter it, FlowEnd why) {
    Entry e = std::move(*it);
    index_.erase(e.key);
    lru_.erase(it);
    if (on_end_) on_end_(e.key, e.value, why);
  }

  // The timer for the least recently used entry's expiry.
  void arm() {
    if (lru_.empty()) return;
    Duration left = lru_.back().last_used + options_.idle_timeout - clock_.now();
    if (left < Duration::zero()) left = Duration::zero();
    timer_->schedule(left, [this] { expire(); });
  }

  void expire() {
    MonoTime now = clock_.now();
    while (!lru_.empty() && lru_.back().last_used + options_.idle_timeout <= now) {
      stats_.expired++;
      end(std::prev(lru_.end()), FlowEnd::kExpired);
    }
    if (!timer_->armed()) arm();
  }

  Clock& clock_;
  FlowTableOptions options_;
  OnEnd on_end_;
  std::unique_ptr<Timer> timer_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, Iter> index_;
  FlowTableStats stats_;
};

}  // namespace wsa::net
