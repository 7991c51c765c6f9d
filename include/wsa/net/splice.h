#pragma once
// Joins two byte streams: what one side sends, the other receives, in both directions, through
// one bounded buffer per direction (data is read from a side only as fast as the other side
// takes it). An end of stream on one side becomes a half-close (shutdownWrite) on the other;
// when both directions have ended, or either side fails, both streams are closed and `done`
// runs once with the byte counts. Used for port forwarding over the overlay.

#include <cstdint>
#include <functional>
#include <system_error>

#include "wsa/common/result.h"
#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::net {

struct SpliceResult {
  uint64_t a_to_b = 0, b_to_a = 0;
  std::error_code error;  // the first failure, if any (an orderly end of both directions: none)
};

void splice(ByteStreamPtr a, ByteStreamPtr b, std::function<void(const SpliceResult&)> done,
            size_t buffer_size = 64 * 1024);

// For code that wants a file descriptor (libssh, blocking clients): splices `stream` to one end
// of a new unix socket pair and returns the other end, which the caller owns. On failure the
// stream is aborted.
Result<int> spliceToFd(asio::io_context& io, ByteStreamPtr stream);

}  // namespace wsa::net
