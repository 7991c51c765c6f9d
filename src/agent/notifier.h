#pragma once
// Loop-local change notification: listeners run synchronously from notify(). A Subscription
// unsubscribes when destroyed.

#include <functional>
#include <map>
#include <memory>

namespace wsa::agent {

class Notifier {
 public:
  struct State {
    uint64_t next = 0;
    std::map<uint64_t, std::function<void()>> listeners;
  };

  class Subscription {
   public:
    Subscription() = default;
    Subscription(std::weak_ptr<Notifier::State> state, uint64_t id)
        : state_(std::move(state)), id_(id) {}
    Subscription(Subscription&& o) noexcept : state_(std::move(o.state_)), id_(o.id_) { o.id_ = 0; }
    Subscription& operator=(Subscription&& o) noexcept {
      reset();
      state_ = std::move(o.state_);
      id_ = o.id_;
      o.id_ = 0;
      return *this;
    }
    ~Subscription() { reset(); }
    void reset() {
      if (auto s = state_.lock(); s && id_ != 0) s->listeners.erase(id_);
      id_ = 0;
    }

   private:
    std::weak_ptr<Notifier::State> state_;
    uint64_t id_ = 0;
  };

  Notifier() : state_(std::make_shared<State>()) {}
  [[nodiscard]] Subscription subscribe(std::function<void()> fn) {
    uint64_t id = ++state_->next;
    state_->listeners[id] = std::move(fn);
    return Subscription(state_, id);
  }
  void notify() {
    // Copy: listeners may unsubscribe (or subscribe) while being notified.
    auto copy = state_->listeners;
    for (auto& [id, fn] : copy) {
      if (state_->listeners.count(id) > 0) fn();
    }
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace wsa::agent
