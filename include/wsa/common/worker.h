#pragma once
// A thread for blocking work (file reads, /proc scans) that must not run on the event loop.
// Jobs run one at a time, in order; the queue is bounded and post() refuses beyond it, so a
// burst of requests degrades into quick refusals instead of unbounded memory or latency.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace wsa {

class Worker {
 public:
  Worker(std::string name, size_t max_queue);
  ~Worker();  // runs nothing more than the job in progress, then joins
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Queues a job; false (and the job is dropped) when max_queue jobs are already waiting.
  bool post(std::function<void()> job);
  size_t depth() const { return depth_.load(); }
  uint64_t refused() const { return refused_.load(); }

 private:
  void run();
  std::string name_;
  size_t max_queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::atomic<size_t> depth_{0};
  std::atomic<uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace wsa
