#include "support/rpty_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "wsa/term/screen.h"

namespace wsa::test {

RptyClient::RptyClient(int port, Options o)
    : rows_(o.rows),
      cols_(o.cols),
      feed_screen_(o.screen),
      screen_(std::make_unique<term::ScreenModel>(
          term::ScreenModel::Options{o.rows, o.cols, 1 << 20})) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (o.receive_buffer > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &o.receive_buffer, sizeof(o.receive_buffer));
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

RptyClient::~RptyClient() {
  close();
}

void RptyClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RptyClient::halfClose() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void RptyClient::sendRaw(const std::string& bytes) {
  size_t off = 0;
  while (fd_ >= 0 && off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

void RptyClient::init(const std::string& id, const std::string& command) {
  std::string body =
      nlohmann::json{{"id", id}, {"height", rows_}, {"width", cols_}, {"command", command}}.dump();
  std::string frame;
  frame += static_cast<char>(body.size() & 0xff);
  frame += static_cast<char>((body.size() >> 8) & 0xff);
  sendRaw(frame + body);
}

void RptyClient::input(const std::string& data) {
  sendRaw(nlohmann::json{{"data", data}}.dump());
}

void RptyClient::resize(int rows, int cols) {
  rows_ = rows;
  cols_ = cols;
  screen_->resize(rows, cols);
  sendRaw(nlohmann::json{{"height", rows}, {"width", cols}}.dump());
}

bool RptyClient::readOnce(std::chrono::milliseconds timeout) {
  if (fd_ < 0 || eof_) return false;
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (r <= 0) return false;
  char buf[65536];
  ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  out_.append(buf, static_cast<size_t>(n));
  if (feed_screen_) screen_->feed(std::string_view(buf, static_cast<size_t>(n)));
  return true;
}

bool RptyClient::waitFor(const std::function<bool(const std::string&)>& done,
                         std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out_)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || eof_ || fd_ < 0) return done(out_);
    readOnce(std::min(left, std::chrono::milliseconds(100)));
  }
  return true;
}

bool RptyClient::waitForText(const std::string& needle, std::chrono::milliseconds timeout) {
  return waitFor([&](const std::string& o) { return o.find(needle) != std::string::npos; },
                 timeout);
}

bool RptyClient::waitForEof(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_ && fd_ >= 0 && std::chrono::steady_clock::now() < deadline) {
    readOnce(std::chrono::milliseconds(100));
  }
  return eof_;
}

}  // namespace wsa::test
