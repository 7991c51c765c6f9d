#include "wsa/wg/tun.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

namespace wsa::wg {

class Tun::Impl {
 public:
  Impl(asio::io_context& io, int fd, OnPacket cb, OnError on_error, Stats& stats)
      : fd_(io, fd),
        on_packet_(std::move(cb)),
        on_error_(std::move(on_error)),
        stats_(stats),
        buf_(65536) {}

  void startRead() {
    fd_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [this, alive = alive_](std::error_code ec) {
                     if (ec || !*alive) return;
                     // A burst at a time, then back to the loop.
                     for (int i = 0; i < 64; ++i) {
                       ssize_t n = ::read(fd_.native_handle(), buf_.data(), buf_.size());
                       if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                         break;
                       if (n <= 0) {
                         // The interface is gone (deleted) or broken: stop reading and say so once.
                         std::string why = n == 0 ? "end of file" : std::strerror(errno);
                         if (on_error_) on_error_("TUN read: " + why);
                         return;
                       }
                       stats_.rx_packets++;
                       on_packet_({buf_.data(), static_cast<size_t>(n)});
                       if (!*alive) return;
                     }
                     startRead();
                   });
  }

  asio::posix::stream_descriptor fd_;
  OnPacket on_packet_;
  OnError on_error_;
  Stats& stats_;
  std::vector<uint8_t> buf_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

Result<std::unique_ptr<Tun>> Tun::open(asio::io_context& io, const std::string& name, int mtu,
                                       OnPacket on_packet, OnError on_error) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return makeError("interface name \"" + name + "\" must be 1 to 15 characters");
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return makeError(std::string("/dev/net/tun: ") + std::strerror(errno));
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int e = errno;
    ::close(fd);
    return makeError("create TUN " + name + ": " + std::strerror(e));
  }
  // MTU and up, through an ordinary socket.
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    ifreq r{};
    std::memcpy(r.ifr_name, ifr.ifr_name, IFNAMSIZ);
    r.ifr_mtu = mtu;
    int mtu_rc = ::ioctl(s, SIOCSIFMTU, &r);
    int mtu_errno = errno;
    ifreq f{};
    std::memcpy(f.ifr_name, ifr.ifr_name, IFNAMSIZ);
    ::ioctl(s, SIOCGIFFLAGS, &f);
    f.ifr_flags = static_cast<short>(f.ifr_flags | IFF_UP);
    int up_rc = ::ioctl(s, SIOCSIFFLAGS, &f);
    int up_errno = errno;
    ::close(s);
    if (mtu_rc != 0 || up_rc != 0) {
      ::close(fd);
      return makeError("configure TUN " + name + ": " +
                       std::strerror(mtu_rc != 0 ? mtu_errno : up_errno));
    }
  }
  std::unique_ptr<Tun> t(new Tun());
  t->name_ = ifr.ifr_name;
  t->impl_ = std::make_unique<Impl>(io, fd, std::move(on_packet), std::move(on_error), t->stats_);
  t->impl_->startRead();
  return t;
}

Tun::~Tun() {
  if (impl_) {
    *impl_->alive_ = false;
    std::error_code ec;
    impl_->fd_.close(ec);
  }
}

void Tun::write(std::span<const uint8_t> pkt) {
  ssize_t n = ::write(impl_->fd_.native_handle(), pkt.data(), pkt.size());
  if (n < 0) {
    stats_.tx_dropped++;
    return;
  }
  stats_.tx_packets++;
}

}  // namespace wsa::wg
