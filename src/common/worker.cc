#include "wsa/common/worker.h"

#include <pthread.h>

namespace wsa {

Worker::Worker(std::string name, size_t max_queue)
    : name_(std::move(name)), max_queue_(max_queue), thread_([this] { run(); }) {}

Worker::~Worker() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
    jobs_.clear();
    depth_ = 0;
  }
  cv_.notify_all();
  thread_.join();
}

bool Worker::post(std::function<void()> job) {
  {
    std::lock_guard l(mu_);
    if (stopping_ || jobs_.size() >= max_queue_) {
      refused_++;
      return false;
    }
    jobs_.push_back(std::move(job));
    depth_ = jobs_.size();
  }
  cv_.notify_one();
  return true;
}

void Worker::run() {
  std::string thread_name = name_.substr(0, 15);
  pthread_setname_np(pthread_self(), thread_name.c_str());
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      depth_ = jobs_.size();
    }
    job();
  }
}

}  // namespace wsa
