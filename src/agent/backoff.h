#pragma once
// Capped exponential backoff with full jitter in the upper half: attempt n waits a random time
// in [d/2, d] where d = min(cap, floor * 2^n). The first attempt does not wait.

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

namespace wsa::agent {

class Backoff {
 public:
  using Duration = std::chrono::steady_clock::duration;
  Backoff(Duration floor, Duration cap, uint64_t seed = std::random_device{}())
      : floor_(floor), cap_(cap), rng_(seed) {}

  // The wait before the next attempt.
  Duration next() {
    if (attempt_ == 0) {
      ++attempt_;
      return Duration::zero();
    }
    Duration d = floor_;
    for (uint32_t i = 1; i < attempt_ && d < cap_; ++i) d *= 2;
    if (d > cap_) d = cap_;
    ++attempt_;
    std::uniform_int_distribution<int64_t> dist(d.count() / 2, d.count());
    return Duration(dist(rng_));
  }
  void reset() { attempt_ = 0; }
  uint32_t attempts() const { return attempt_; }

 private:
  Duration floor_;
  Duration cap_;
  std::mt19937_64 rng_;
  uint32_t attempt_ = 0;
};

}  // namespace wsa::agent
