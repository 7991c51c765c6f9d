#include "wsa/http/parser.h"

#include <charconv>

#include "wsa/common/strings.h"

namespace wsa::http {

namespace {

bool isTokenChar(char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isTokenChar(c)) return false;
  }
  return true;
}

}  // namespace

RequestParser::State RequestParser::fail(int status, std::string message) {
  state_ = State::kError;
  error_status_ = status;
  error_message_ = std::move(message);
  return state_;
}

RequestParser::State RequestParser::feed(std::string_view bytes) {
  if (state_ != State::kNeedMore) return state_;
  buffer_.append(bytes);
  if (!headers_done_) {
    size_t end = buffer_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (buffer_.size() > limits_.max_header_bytes) {
        return fail(431, "request header section exceeds " +
                             std::to_string(limits_.max_header_bytes) + " bytes");
      }
      return state_;
    }
    if (end + 4 > limits_.max_header_bytes) {
      return fail(431, "request header section exceeds " +
                           std::to_string(limits_.max_header_bytes) + " bytes");
    }
    if (parseHead(std::string_view(buffer_).substr(0, end)) == State::kError) return state_;
    buffer_.erase(0, end + 4);
    headers_done_ = true;
  }
  if (buffer_.size() < body_length_) return state_;
  request_.body = buffer_.substr(0, body_length_);
  buffer_.erase(0, body_length_);
  state_ = State::kComplete;
  return state_;
}

RequestParser::State RequestParser::parseHead(std::string_view head) {
  request_ = Request{};
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  // METHOD SP request-target SP HTTP/1.x
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return fail(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!isToken(method)) return fail(400, "malformed method");
  if (version == "HTTP/1.1") {
    request_.version_minor = 1;
  } else if (version == "HTTP/1.0") {
    request_.version_minor = 0;
  } else if (version.rfind("HTTP/", 0) == 0) {
    return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  } else {
    return fail(400, "malformed HTTP version");
  }
  if (target.empty() || target.front() != '/') {
    return fail(400, "request target must be an absolute path");
  }
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return fail(400, "request target contains control characters");
    }
  }
  request_.method = std::string(method);
  request_.target = std::string(target);
  size_t q = target.find('?');
  request_.path = percentDecode(target.substr(0, q));
  if (q != std::string_view::npos) request_.query = std::string(target.substr(q + 1));

  bool have_length = false;
  body_length_ = 0;
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string_view::npos) e = head.size();
    std::string_view h = head.substr(pos, e - pos);
    pos = e + 2;
    if (h.empty()) continue;
    if (h.front() == ' ' || h.front() == '\t') return fail(400, "obsolete header line folding");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos) return fail(400, "malformed header line");
    std::string_view name = h.substr(0, colon);
    if (!isToken(name)) return fail(400, "malformed header name");
    std::string_view value = trim(h.substr(colon + 1));
    if (request_.headers.size() >= limits_.max_headers) {
      return fail(431, "more than " + std::to_string(limits_.max_headers) + " headers");
    }
    if (iequals(name, "Transfer-Encoding")) {
      return fail(501, "chunked request bodies are not supported; send Content-Length");
    }
    if (iequals(name, "Content-Length")) {
      size_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc() || ptr != value.data() + value.size()) {
        return fail(400, "malformed Content-Length");
      }
      if (have_length && n != body_length_) return fail(400, "conflicting Content-Length");
      have_length = true;
      body_length_ = n;
      if (n > limits_.max_body_bytes) {
        return fail(413, "request body of " + std::to_string(n) + " bytes exceeds the limit of " +
                             std::to_string(limits_.max_body_bytes));
      }
    }
    request_.headers.push_back({std::string(name), std::string(value)});
  }
  return state_;
}

Request RequestParser::take() {
  Request r = std::move(request_);
  request_ = Request{};
  headers_done_ = false;
  body_length_ = 0;
  state_ = State::kNeedMore;
  return r;
}

}  // namespace wsa::http
