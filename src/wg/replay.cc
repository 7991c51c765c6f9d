#include "wg/replay.h"

namespace wsa::wg {

namespace {
constexpr uint64_t kBitsPerWord = 64;
}  // namespace

bool ReplayWindow::check(uint64_t counter) const {
  if (!any_ || counter > newest_) return true;
  if (newest_ - counter >= kWindow) return false;
  uint64_t word = (counter / kBitsPerWord) % kWords;
  return (bits_[word] & (uint64_t{1} << (counter % kBitsPerWord))) == 0;
}

bool ReplayWindow::update(uint64_t counter) {
  if (!check(counter)) return false;
  if (!any_ || counter > newest_) {
    // Clear the words between the old newest and the new one (all of them after a big jump).
    uint64_t old_word = any_ ? newest_ / kBitsPerWord : 0;
    uint64_t new_word = counter / kBitsPerWord;
    if (!any_ || new_word - old_word >= kWords) {
      bits_.fill(0);
    } else {
      for (uint64_t w = old_word + 1; w <= new_word; ++w) bits_[w % kWords] = 0;
    }
    newest_ = counter;
    any_ = true;
  }
  bits_[(counter / kBitsPerWord) % kWords] |= uint64_t{1} << (counter % kBitsPerWord);
  return true;
}

void ReplayWindow::reset() {
  bits_.fill(0);
  newest_ = 0;
  any_ = false;
}

}  // namespace wsa::wg
