#include "wsa/wg/udp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

namespace wsa::wg {

class UdpBind::Impl {
 public:
  Impl(asio::io_context& io, int fd, bool v6, OnDatagram cb)
      : io_(io),
        sock_(io, fd),
        v6_(v6),
        on_datagram_(std::move(cb)),
        rx_bufs_(kBatch, std::vector<uint8_t>(kMaxDatagram)) {
    // The receive headers point at fixed buffers: wired once.
    for (size_t i = 0; i < kBatch; ++i) {
      rx_iov_[i] = {rx_bufs_[i].data(), rx_bufs_[i].size()};
      std::memset(&rx_msgs_[i], 0, sizeof(rx_msgs_[i]));
      rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
      rx_msgs_[i].msg_hdr.msg_iovlen = 1;
      rx_msgs_[i].msg_hdr.msg_name = &rx_addrs_[i];
    }
  }

  void startReceive() {
    sock_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [this, alive = alive_](std::error_code ec) {
                       if (ec || !*alive) return;
                       receiveBatch();
                       startReceive();
                     });
  }

  void receiveBatch() {
    // Drain what is there, a batch at a time, but yield to the loop after a few batches.
    for (int round = 0; round < 4; ++round) {
      for (size_t i = 0; i < kBatch; ++i) {
        rx_msgs_[i].msg_hdr.msg_namelen = sizeof(rx_addrs_[i]);  // in/out: reset each round
      }
      int n = ::recvmmsg(sock_.native_handle(), rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;
      stats.rx_batches++;
      for (int i = 0; i < n; ++i) {
        auto& m = rx_msgs_[static_cast<size_t>(i)];
        if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0) {
          stats.rx_truncated++;
          continue;
        }
        stats.rx_datagrams++;
        Endpoint from =
            Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&rx_addrs_[static_cast<size_t>(i)]));
        on_datagram_(from, {rx_bufs_[static_cast<size_t>(i)].data(), m.msg_len});
      }
      if (static_cast<size_t>(n) < kBatch) return;
    }
  }

  void send(const Endpoint& to, std::span<const uint8_t> d) {
    if (queue_.size() >= kMaxQueued) {
      stats.tx_dropped++;
      return;
    }
    Pending p;
    if (!free_.empty()) {
      p.bytes = std::move(free_.back());
      free_.pop_back();
    }
    p.bytes.assign(d.begin(), d.end());
    p.to = to;
    queue_.push_back(std::move(p));
    if (!flush_posted_ && !waiting_writable_) {
      flush_posted_ = true;
      asio::post(io_, [this, alive = alive_] {
        if (!*alive) return;
        flush_posted_ = false;
        flush();
      });
    }
  }

  void flush() {
    while (!queue_.empty()) {
      size_t n = std::min(queue_.size(), kBatch);
      auto& msgs = tx_msgs_;
      auto& iov = tx_iov_;
      auto& addrs = tx_addrs_;
      for (size_t i = 0; i < n; ++i) {
        auto& p = queue_[i];
        socklen_t len = toSock(p.to, &addrs[i]);
        iov[i] = {p.bytes.data(), p.bytes.size()};
        std::memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = len;
      }
      int sent =
          ::sendmmsg(sock_.native_handle(), msgs.data(), static_cast<unsigned>(n), MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
          waitWritable();
          return;
        }
        // Unreachable destination and the like: drop this datagram, carry on with the rest.
        stats.tx_errors++;
        recycle(1);
        continue;
      }
      stats.tx_batches++;
      stats.tx_datagrams += static_cast<uint64_t>(sent);
      recycle(static_cast<size_t>(sent));
    }
  }

  void waitWritable() {
    if (waiting_writable_) return;
    waiting_writable_ = true;
    sock_.async_wait(asio::posix::stream_descriptor::wait_write,
                     [this, alive = alive_](std::error_code ec) {
                       if (ec || !*alive) return;
                       waiting_writable_ = false;
                       flush();
                     });
  }

  void recycle(size_t n) {
    for (size_t i = 0; i < n && !queue_.empty(); ++i) {
      if (free_.size() < 256) free_.push_back(std::move(queue_.front().bytes));
      queue_.pop_front();
    }
  }

  socklen_t toSock(const Endpoint& e, sockaddr_storage* ss) const {
    if (v6_ && !e.v6) {
      // IPv4 through the dual-stack socket: ::ffff:a.b.c.d
      Endpoint mapped;
      mapped.v6 = true;
      mapped.port = e.port;
      mapped.addr[10] = mapped.addr[11] = 0xff;
      std::memcpy(mapped.addr.data() + 12, e.addr.data(), 4);
      return mapped.toSockaddr(ss);
    }
    return e.toSockaddr(ss);
  }

  struct Pending {
    Endpoint to;
    std::vector<uint8_t> bytes;
  };

  asio::io_context& io_;
  asio::posix::stream_descriptor sock_;
  bool v6_;
  OnDatagram on_datagram_;
  std::vector<std::vector<uint8_t>> rx_bufs_;
  std::array<mmsghdr, kBatch> rx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<sockaddr_storage, kBatch> rx_addrs_{};
  std::array<mmsghdr, kBatch> tx_msgs_{};
  std::array<iovec, kBatch> tx_iov_{};
  std::array<sockaddr_storage, kBatch> tx_addrs_{};
  std::deque<Pending> queue_;
  std::vector<std::vector<uint8_t>> free_;
  bool flush_posted_ = false;
  bool waiting_writable_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Stats stats;
};

UdpBind::UdpBind(std::unique_ptr<Impl> impl) : impl_(std::move(impl)), stats_(impl_->stats) {}

UdpBind::~UdpBind() {
  *impl_->alive_ = false;
  std::error_code ec;
  impl_->sock_.close(ec);
}

size_t UdpBind::queued() const {
  return impl_->queue_.size();
}

void UdpBind::send(const Endpoint& to, std::span<const uint8_t> datagram) {
  impl_->send(to, datagram);
}

Result<std::unique_ptr<UdpBind>> UdpBind::open(asio::io_context& io, uint16_t port,
                                               OnDatagram on_datagram, const std::string& address) {
  auto fail = [](const std::string& what, int fd) -> Error {
    int e = errno;
    if (fd >= 0) ::close(fd);
    return makeError(what + ": " + std::strerror(e));
  };
  Endpoint want;
  bool specific = !address.empty();
  if (specific) {
    auto e = parseEndpoint(address + ":1");
    if (!e) e = parseEndpoint("[" + address + "]:1");
    if (!e) return makeError("UDP bind address \"" + address + "\" is not an IP address");
    want = *e;
  }
  bool v6 = specific ? want.v6 : true;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0 && !specific) {
    v6 = false;  // no IPv6 on this host
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }
  if (fd < 0) return fail("UDP socket", -1);
  if (v6 && !specific) {
    int off = 0;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  }
  int buf = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  if (!specific) want.v6 = v6;  // all-zero address: the wildcard of its family
  want.port = port;
  sockaddr_storage ss{};
  socklen_t len = want.toSockaddr(&ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return fail("UDP bind to port " + std::to_string(port), fd);
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  auto impl = std::make_unique<Impl>(io, fd, v6, std::move(on_datagram));
  std::unique_ptr<UdpBind> b(new UdpBind(std::move(impl)));
  b->port_ = Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&bound)).port;
  b->impl_->startReceive();
  return b;
}

}  // namespace wsa::wg
