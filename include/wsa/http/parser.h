#pragma once
// Incremental HTTP/1.x request parser with hard limits. Bytes go in with feed(); once a request
// is complete, take() returns it and keeps any pipelined bytes for the next one.

#include <cstddef>
#include <string>
#include <string_view>

#include "wsa/http/message.h"

namespace wsa::http {

struct ParserLimits {
  size_t max_header_bytes = 16 * 1024;  // request line plus headers
  size_t max_body_bytes = 1u << 20;
  size_t max_headers = 100;
};

class RequestParser {
 public:
  enum class State { kNeedMore, kComplete, kError };

  explicit RequestParser(ParserLimits limits = {}) : limits_(limits) {}

  // Appends bytes and advances. Returns the new state.
  State feed(std::string_view bytes);
  // Re-examines buffered bytes (after take()) without new input.
  State advance() { return feed({}); }
  State state() const { return state_; }
  // Valid in kComplete: moves the request out and resets for the next one.
  Request take();
  // Valid in kError: the status to answer with, and why.
  int errorStatus() const { return error_status_; }
  const std::string& errorMessage() const { return error_message_; }
  // True when some bytes of a request have arrived (for header timeouts).
  bool hasPartialRequest() const { return !buffer_.empty() || headers_done_; }

 private:
  State fail(int status, std::string message);
  State parseHead(std::string_view head);

  ParserLimits limits_;
  std::string buffer_;
  State state_ = State::kNeedMore;
  bool headers_done_ = false;
  size_t body_length_ = 0;
  Request request_;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace wsa::http
