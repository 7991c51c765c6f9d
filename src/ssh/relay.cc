#include "ssh/relay.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "ssh/connection.h"

namespace wsa::ssh {

namespace {

constexpr size_t kMaxBuffered = 1u << 20;  // per direction and channel
constexpr size_t kReadChunk = 32 * 1024;

}  // namespace

Relay::Relay(Connection& conn, ssh_channel ch, int read_fd, int err_fd, int write_fd)
    : conn_(conn), ch_(ch), read_fd_(read_fd), err_fd_(err_fd), write_fd_(write_fd) {
  same_fd_ = read_fd_ >= 0 && read_fd_ == write_fd_;
  if (err_fd_ < 0) err_eof_ = true;
  if (read_fd_ < 0) read_eof_ = true;
  updateWatch();
}

Relay::~Relay() {
  closeFds();
}

void Relay::closeFds() {
  for (int* fd : {&read_fd_, &err_fd_, &write_fd_}) {
    if (*fd >= 0) {
      int f = *fd;
      conn_.watch(f, 0, nullptr);
      if (!(fd == &write_fd_ && same_fd_)) conn_.closeLater(f);
      *fd = -1;
    }
  }
}

void Relay::updateWatch() {
  // One registration per fd: sockets and PTY masters read and write the same descriptor.
  auto want_read = [&](bool eof, const std::string& buf) {
    return !eof && buf.size() < kMaxBuffered;
  };
  short rd = (read_fd_ >= 0 && want_read(read_eof_, out_)) ? POLLIN : 0;
  short wr = (write_fd_ >= 0 && !in_.empty()) ? POLLOUT : 0;
  if (same_fd_) {
    if (read_fd_ >= 0) {
      conn_.watch(read_fd_, static_cast<short>(rd | wr), [this](int rev) {
        if (rev & (POLLIN | POLLHUP | POLLERR)) onReadable(read_fd_);
        if (rev & POLLOUT) onWritable();
      });
    }
  } else {
    if (read_fd_ >= 0) {
      conn_.watch(read_fd_, rd, [this, fd = read_fd_](int) { onReadable(fd); });
    }
    if (write_fd_ >= 0) conn_.watch(write_fd_, wr, [this](int) { onWritable(); });
  }
  if (err_fd_ >= 0) {
    short er = want_read(err_eof_, err_) ? POLLIN : 0;
    conn_.watch(err_fd_, er, [this, fd = err_fd_](int) { onReadable(fd); });
  }
}

void Relay::onReadable(int fd) {
  bool is_err = fd == err_fd_ && fd >= 0;
  std::string& buf = is_err ? err_ : out_;
  bool& eof = is_err ? err_eof_ : read_eof_;
  if (eof || fd < 0) return;
  char tmp[kReadChunk];
  while (buf.size() < kMaxBuffered) {
    ssize_t n = ::read(fd, tmp, sizeof(tmp));
    if (n > 0) {
      buf.append(tmp, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    eof = true;  // EOF, or EIO from a PTY whose last writer is gone
    break;
  }
  flushOut();
  updateWatch();
}

void Relay::drainNow() {
  if (read_fd_ >= 0 && !read_eof_) onReadable(read_fd_);
  if (err_fd_ >= 0 && !err_eof_) onReadable(err_fd_);
}

void Relay::flushOut() {
  // ssh_channel_write may process incoming packets and so run our callbacks (write_wontblock,
  // data) before it returns: a nested flush would send the unerased head of the buffer twice.
  if (flushing_out_) return;
  flushing_out_ = true;
  for (bool is_err : {false, true}) {
    std::string& buf = is_err ? err_ : out_;
    while (!buf.empty()) {
      uint32_t window = ssh_channel_window_size(ch_);
      if (window == 0) break;
      size_t n = std::min<size_t>({buf.size(), window, kReadChunk});
      int w = is_err ? ssh_channel_write_stderr(ch_, buf.data(), static_cast<uint32_t>(n))
                     : ssh_channel_write(ch_, buf.data(), static_cast<uint32_t>(n));
      if (w <= 0) break;
      buf.erase(0, static_cast<size_t>(w));
    }
  }
  flushing_out_ = false;
}

void Relay::onWindowOpened() {
  flushOut();
  updateWatch();
}

int Relay::onChannelData(const char* data, uint32_t len) {
  if (write_fd_ < 0) return static_cast<int>(len);  // nowhere to go: discard
  size_t taken = 0;
  if (in_.empty()) {
    while (taken < len) {
      ssize_t w = ::write(write_fd_, data + taken, len - taken);
      if (w > 0) {
        taken += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // The reader is gone (process exited, socket closed): drop input from now on.
      return static_cast<int>(len);
    }
  }
  size_t room = kMaxBuffered > in_.size() ? kMaxBuffered - in_.size() : 0;
  size_t keep = std::min<size_t>(room, len - taken);
  in_.append(data + taken, keep);
  updateWatch();
  // What we neither wrote nor buffered stays with libssh, which holds back the peer's window.
  return static_cast<int>(taken + keep);
}

void Relay::onWritable() {
  flushIn();
}

void Relay::flushIn() {
  if (flushing_in_) return;  // ssh_channel_read_nonblocking below can call onChannelData
  flushing_in_ = true;
  while (!in_.empty() && write_fd_ >= 0) {
    ssize_t w = ::write(write_fd_, in_.data(), in_.size());
    if (w > 0) {
      in_.erase(0, static_cast<size_t>(w));
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    in_.clear();
    break;
  }
  // Pull what libssh held back while our buffer was full.
  while (in_.size() < kMaxBuffered && write_fd_ >= 0 && ch_ != nullptr &&
         !ssh_channel_is_closed(ch_)) {
    char tmp[kReadChunk];
    int n = ssh_channel_read_nonblocking(ch_, tmp, sizeof(tmp), 0);
    if (n <= 0) break;
    in_.append(tmp, static_cast<size_t>(n));
    while (!in_.empty()) {
      ssize_t w = ::write(write_fd_, in_.data(), in_.size());
      if (w <= 0) break;
      in_.erase(0, static_cast<size_t>(w));
    }
    if (!in_.empty()) break;
  }
  flushing_in_ = false;
  if (in_.empty() && channel_eof_ && write_fd_ >= 0 && !same_fd_) {
    conn_.watch(write_fd_, 0, nullptr);
    conn_.closeLater(write_fd_);
    write_fd_ = -1;
  } else if (in_.empty() && channel_eof_ && same_fd_ && read_fd_ >= 0) {
    ::shutdown(read_fd_, SHUT_WR);  // sockets: half-close; PTYs ignore it
  }
  updateWatch();
}

void Relay::onChannelEof() {
  channel_eof_ = true;
  flushIn();
}

bool Relay::outputDone() const {
  return read_eof_ && err_eof_ && out_.empty() && err_.empty();
}

}  // namespace wsa::ssh
