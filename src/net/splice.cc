#include "wsa/net/splice.h"

#include <sys/socket.h>
#include <unistd.h>

#include <asio/error.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "wsa/net/asio_stream.h"

namespace wsa::net {

namespace {

class Splice : public std::enable_shared_from_this<Splice> {
 public:
  Splice(ByteStreamPtr a, ByteStreamPtr b, std::function<void(const SpliceResult&)> done,
         size_t size)
      : done_(std::move(done)) {
    side_[0].stream = std::move(a);
    side_[1].stream = std::move(b);
    for (auto& s : side_) s.buf.resize(size);
  }

  void start() {
    pump(0);
    pump(1);
  }

 private:
  struct Side {
    ByteStreamPtr stream;
    std::vector<uint8_t> buf;  // data read from this side, on its way to the other
    bool ended = false;        // this side's direction is finished (EOF passed on)
  };

  // Moves data read from side `from` to the other side.
  void pump(int from) {
    auto self = shared_from_this();
    Side& s = side_[from];
    s.stream->asyncReadSome(
        s.buf.data(), s.buf.size(), [this, self, from](std::error_code ec, size_t n) {
          if (finished_) return;
          Side& src = side_[from];
          Side& dst = side_[1 - from];
          if (ec == asio::error::eof) {
            dst.stream->shutdownWrite();
            src.ended = true;
            if (side_[0].ended && side_[1].ended) finish({});
            return;
          }
          if (ec) {
            finish(ec);
            return;
          }
          dst.stream->asyncWrite(src.buf.data(), n,
                                 [this, self, from](std::error_code wec, size_t w) {
                                   if (finished_) return;
                                   (from == 0 ? result_.a_to_b : result_.b_to_a) += w;
                                   if (wec) {
                                     finish(wec);
                                     return;
                                   }
                                   pump(from);
                                 });
        });
  }

  void finish(std::error_code ec) {
    if (finished_) return;
    finished_ = true;
    result_.error = ec;
    side_[0].stream->close();
    side_[1].stream->close();
    if (done_) done_(result_);
  }

  Side side_[2];
  SpliceResult result_;
  std::function<void(const SpliceResult&)> done_;
  bool finished_ = false;
};

}  // namespace

void splice(ByteStreamPtr a, ByteStreamPtr b, std::function<void(const SpliceResult&)> done,
            size_t buffer_size) {
  std::make_shared<Splice>(std::move(a), std::move(b), std::move(done), buffer_size)->start();
}

Result<int> spliceToFd(asio::io_context& io, ByteStreamPtr stream) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    int e = errno;
    stream->abort();
    return makeError(std::string("socketpair: ") + std::strerror(e));
  }
  asio::local::stream_protocol::socket local(io);
  std::error_code ec;
  local.assign(asio::local::stream_protocol(), fds[0], ec);
  if (ec) {
    ::close(fds[0]);
    ::close(fds[1]);
    stream->abort();
    return makeError("socket pair: " + ec.message());
  }
  splice(std::move(stream), std::make_unique<UnixStream>(std::move(local)), nullptr);
  return fds[1];
}

}  // namespace wsa::net
