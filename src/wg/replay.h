#pragma once
// The receive-side replay window (RFC 6479 style): a bitmap of the last kWindow counters
// relative to the highest one seen. Check before decrypting (cheap), then update after the
// packet authenticated — a forged packet must not move the window.

#include <array>
#include <cstddef>
#include <cstdint>

namespace wsa::wg {

class ReplayWindow {
 public:
  static constexpr uint64_t kWindow = 8192 - 64;  // counters behind the newest still accepted
  // The counter is acceptable (not too old, not seen).
  bool check(uint64_t counter) const;
  // Marks the counter seen; false if it was not acceptable (replayed or too old).
  bool update(uint64_t counter);
  void reset();

 private:
  static constexpr size_t kWords = 8192 / 64;
  std::array<uint64_t, kWords> bits_{};
  uint64_t newest_ = 0;
  bool any_ = false;
};

}  // namespace wsa::wg
