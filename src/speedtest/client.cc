// The blocking speed test client: plain poll(2) on one socket, bounded by the test's duration
// plus a grace period at every wait.

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "wsa/speedtest/speedtest.h"

namespace wsa::speedtest {

namespace {

using Steady = std::chrono::steady_clock;

class Io {
 public:
  Io(int fd, Steady::time_point deadline) : fd_(fd), deadline_(deadline) {}

  Status wait(short events) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Steady::now());
      if (left.count() <= 0) return makeError("timed out");
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return makeError(std::string("poll: ") + std::strerror(errno));
      if (r > 0) return {};
    }
  }
  Status writeAll(const char* data, size_t n) {
    while (n > 0) {
      if (auto st = wait(POLLOUT); !st) return st;
      ssize_t w = ::send(fd_, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (w < 0) return makeError(std::string("send: ") + std::strerror(errno));
      data += w;
      n -= static_cast<size_t>(w);
    }
    return {};
  }
  // Some bytes into buf (0 means EOF).
  Result<size_t> readSome(char* buf, size_t cap) {
    for (;;) {
      if (auto st = wait(POLLIN); !st) return makeError(st.error());
      ssize_t r = ::recv(fd_, buf, cap, MSG_DONTWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r < 0) return makeError(std::string("recv: ") + std::strerror(errno));
      return static_cast<size_t>(r);
    }
  }
  void setDeadline(Steady::time_point d) { deadline_ = d; }

 private:
  int fd_;
  Steady::time_point deadline_;
};

uint32_t frameLength(const char* h) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(h[1])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(h[2])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(h[3])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(h[4]));
}

}  // namespace

Result<Results> runClient(int fd, const Config& config, std::chrono::milliseconds grace) {
  Io io(fd, Steady::now() + grace);
  std::string line = encodeConfig(config);
  if (auto st = io.writeAll(line.data(), line.size()); !st) return makeError(st.error());
  // The answer line; bytes after it belong to the data phase.
  std::string in;
  std::vector<char> buf(256 * 1024);
  size_t nl;
  while ((nl = in.find('\n')) == std::string::npos) {
    if (in.size() > kMaxConfigLine) return makeError("the agent's answer is too long");
    auto n = io.readSome(buf.data(), buf.size());
    if (!n) return makeError("waiting for the agent's answer: " + n.error());
    if (*n == 0) return makeError("the agent closed the connection without an answer");
    in.append(buf.data(), *n);
  }
  auto answer = nlohmann::json::parse(in.substr(0, nl), nullptr, false);
  in.erase(0, nl + 1);
  if (answer.is_discarded() || !answer.is_object())
    return makeError("the agent's answer is not JSON");
  if (answer.contains("error")) {
    return makeError("the agent refused the test: " + answer["error"].get<std::string>());
  }
  if (!answer.value("ok", false)) return makeError("the agent did not accept the test");
  auto start = Steady::now();
  io.setDeadline(start + config.duration + grace);

  if (config.direction == Direction::kUpload) {
    const std::string frame =
        frameHeader('D', static_cast<uint32_t>(kBlockSize)) + std::string(kBlockSize, '\x5a');
    while (Steady::now() < start + config.duration) {
      if (auto st = io.writeAll(frame.data(), frame.size()); !st) {
        return makeError("sending: " + st.error());
      }
    }
    std::string end = frameHeader('E', 0);
    if (auto st = io.writeAll(end.data(), end.size()); !st)
      return makeError("sending: " + st.error());
    // The agent's results: one R frame.
    for (;;) {
      if (in.size() >= kFrameHeader) {
        if (in[0] != 'R') return makeError("unexpected frame from the agent");
        uint32_t len = frameLength(in.data());
        if (len > kMaxFramePayload) return makeError("results frame too large");
        if (in.size() >= kFrameHeader + len) return resultsFromJson(in.substr(kFrameHeader, len));
      }
      auto n = io.readSome(buf.data(), buf.size());
      if (!n) return makeError("waiting for results: " + n.error());
      if (*n == 0) return makeError("the agent closed the connection before sending results");
      in.append(buf.data(), *n);
    }
  }

  // Download: count D payload bytes as they arrive until E.
  Meter meter(start);
  size_t payload_left = 0;
  std::string header;
  auto consume = [&](const char* data, size_t n) -> Result<bool> {
    auto now = Steady::now();
    while (n > 0) {
      if (payload_left > 0) {
        size_t take = std::min(n, payload_left);
        meter.add(now, take);
        payload_left -= take;
        data += take;
        n -= take;
        continue;
      }
      size_t take = std::min(n, kFrameHeader - header.size());
      header.append(data, take);
      data += take;
      n -= take;
      if (header.size() < kFrameHeader) break;
      uint32_t len = frameLength(header.data());
      char type = header[0];
      header.clear();
      if (type == 'E') return true;
      if (type != 'D' || len > kMaxFramePayload) return makeError("bad frame from the agent");
      payload_left = len;
    }
    return false;
  };
  if (!in.empty()) {
    auto done = consume(in.data(), in.size());
    if (!done) return makeError(done.error());
    if (*done) return meter.finish(Steady::now(), Direction::kDownload);
  }
  for (;;) {
    auto n = io.readSome(buf.data(), buf.size());
    if (!n) return makeError("receiving: " + n.error());
    if (*n == 0) return makeError("the agent closed the connection before the end of the test");
    auto done = consume(buf.data(), *n);
    if (!done) return makeError(done.error());
    if (*done) return meter.finish(Steady::now(), Direction::kDownload);
  }
}

}  // namespace wsa::speedtest
