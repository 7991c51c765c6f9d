#include "netstack/forward.h"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "wsa/common/logging.h"
#include "wsa/net/asio_stream.h"
#include "wsa/net/splice.h"

namespace wsa::netstack {

class LocalForwarder::Impl : public std::enable_shared_from_this<LocalForwarder::Impl> {
 public:
  Impl(asio::io_context& io, Options o) : io_(io), opts_(o), log_(logging::get("forward")) {}

  void forward(net::ByteStreamPtr overlay, uint16_t port) {
    if (stats_.active >= opts_.max_active) {
      stats_.rejected++;
      overlay->abort();
      return;
    }
    stats_.active++;
    auto attempt = std::make_shared<Attempt>(io_, std::move(overlay), port);
    connect(attempt, false);
  }

  struct Attempt {
    Attempt(asio::io_context& io, net::ByteStreamPtr o, uint16_t p)
        : overlay(std::move(o)), port(p), socket(io), timer(io) {}
    net::ByteStreamPtr overlay;
    uint16_t port;
    asio::ip::tcp::socket socket;
    asio::steady_timer timer;
  };

  void connect(const std::shared_ptr<Attempt>& a, bool v6) {
    auto self = shared_from_this();
    asio::ip::tcp::endpoint to(v6 ? asio::ip::address(asio::ip::address_v6::loopback())
                                  : asio::ip::address(asio::ip::address_v4::loopback()),
                               a->port);
    a->timer.expires_after(opts_.connect_timeout);
    a->timer.async_wait([a](std::error_code ec) {
      if (!ec) {
        std::error_code ignored;
        a->socket.close(ignored);
      }
    });
    a->socket.async_connect(to, [this, self, a, v6](std::error_code ec) {
      a->timer.cancel();
      if (ec) {
        std::error_code ignored;
        a->socket.close(ignored);
        if (!v6) {
          connect(a, true);
          return;
        }
        stats_.refused++;
        stats_.active--;
        log_->debug("overlay port {}: nothing listens on the loopback ({})", a->port,
                    ec.message());
        a->overlay->abort();  // the overlay client sees "connection refused"
        return;
      }
      std::error_code ignored;
      a->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      stats_.connections++;
      auto local = std::make_unique<net::TcpStream>(std::move(a->socket));
      std::weak_ptr<Impl> weak = self;
      net::splice(std::move(a->overlay), std::move(local), [weak](const net::SpliceResult& r) {
        auto impl = weak.lock();
        if (!impl) return;
        impl->stats_.active--;
        impl->stats_.bytes_to_local += r.a_to_b;
        impl->stats_.bytes_from_local += r.b_to_a;
      });
    });
  }

  asio::io_context& io_;
  Options opts_;
  ForwardStats stats_;
  std::shared_ptr<spdlog::logger> log_;
};

LocalForwarder::LocalForwarder(asio::io_context& io, Options options)
    : impl_(std::make_shared<Impl>(io, options)) {}
LocalForwarder::~LocalForwarder() = default;

void LocalForwarder::forward(net::ByteStreamPtr overlay, uint16_t port) {
  impl_->forward(std::move(overlay), port);
}

const ForwardStats& LocalForwarder::stats() const { return impl_->stats_; }

}  // namespace wsa::netstack
