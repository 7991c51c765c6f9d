#pragma once
// Driving an Asio loop in tests: run it in short slices until a condition holds, bounded in
// real time (scaled for sanitizer builds). Include only from tests that use Asio.

#include <asio/io_context.hpp>
#include <chrono>
#include <functional>

#include "support/util.h"

namespace wsa::test {

inline bool runLoopUntil(asio::io_context& io, const std::function<bool()>& done,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return done();
}

}  // namespace wsa::test
