#include "wsa/netstack/forward.h"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <map>

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
    connect(attempt);
  }

  struct Attempt {
    Attempt(asio::io_context& io, net::ByteStreamPtr o, uint16_t p)
        : overlay(std::move(o)), port(p), socket(io), timer(io) {}
    net::ByteStreamPtr overlay;
    uint16_t port;
    asio::ip::tcp::socket socket;
    asio::steady_timer timer;
  };

  // Connects to the loopback (IPv4, then IPv6); `done` gets the socket or the error.
  void connectLocal(const std::shared_ptr<Attempt>& a, bool v6,
                    std::function<void(std::error_code)> done) {
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
    a->socket.async_connect(to, [this, self = shared_from_this(), a, v6,
                                 done = std::move(done)](std::error_code ec) mutable {
      a->timer.cancel();
      if (ec) {
        std::error_code ignored;
        a->socket.close(ignored);
        if (!v6) {
          connectLocal(a, true, std::move(done));
          return;
        }
        log_->debug("overlay port {}: nothing listens on the loopback ({})", a->port, ec.message());
      } else {
        std::error_code ignored;
        a->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      }
      done(ec);
    });
  }

  void connect(const std::shared_ptr<Attempt>& a) {
    connectLocal(a, /*v6=*/false, [this, self = shared_from_this(), a](std::error_code ec) {
      if (ec) {
        stats_.refused++;
        stats_.active--;
        a->overlay->abort();  // the overlay client sees a reset
        return;
      }
      join(a);
    });
  }

  void join(const std::shared_ptr<Attempt>& a) {
    stats_.connections++;
    auto local = std::make_unique<net::TcpStream>(std::move(a->socket));
    std::weak_ptr<Impl> weak = shared_from_this();
    net::splice(std::move(a->overlay), std::move(local), [weak](const net::SpliceResult& r) {
      auto impl = weak.lock();
      if (!impl) return;
      impl->stats_.active--;
      impl->stats_.bytes_to_local += r.a_to_b;
      impl->stats_.bytes_from_local += r.b_to_a;
    });
  }

  void gate(uint16_t port, const std::string& remote, std::function<void(bool)> admit) {
    if (stats_.active + ready_.size() >= opts_.max_active) {
      stats_.rejected++;
      admit(false);
      return;
    }
    auto a = std::make_shared<Attempt>(io_, nullptr, port);
    std::string key = remote + "|" + std::to_string(port);
    connectLocal(
        a, false,
        [this, self = shared_from_this(), a, key, admit = std::move(admit)](std::error_code ec) {
          if (ec) {
            stats_.refused++;
            admit(false);
            return;
          }
          // Wait for the overlay side; give the socket up if it never comes.
          ready_[key] = a;
          a->timer.expires_after(opts_.connect_timeout);
          a->timer.async_wait([this, self, key, a](std::error_code tec) {
            if (tec) return;
            auto it = ready_.find(key);
            if (it == ready_.end() || it->second != a) return;
            ready_.erase(it);
            stats_.unclaimed++;
            std::error_code ignored;
            a->socket.close(ignored);
          });
          admit(true);
        });
  }

  void forwardClaimed(net::ByteStreamPtr overlay, uint16_t port, const std::string& remote) {
    auto it = ready_.find(remote + "|" + std::to_string(port));
    if (it == ready_.end()) {
      forward(std::move(overlay), port);
      return;
    }
    auto a = it->second;
    ready_.erase(it);
    a->timer.cancel();
    a->overlay = std::move(overlay);
    stats_.active++;
    join(a);
  }

  asio::io_context& io_;
  Options opts_;
  ForwardStats stats_;
  std::map<std::string, std::shared_ptr<Attempt>> ready_;  // gate-opened, waiting for forward()
  std::shared_ptr<spdlog::logger> log_;
};

LocalForwarder::LocalForwarder(asio::io_context& io, Options options)
    : impl_(std::make_shared<Impl>(io, options)) {}
LocalForwarder::~LocalForwarder() = default;

void LocalForwarder::forward(net::ByteStreamPtr overlay, uint16_t port, const std::string& remote) {
  // Without a gate-opened connection for (remote, port) this connects afresh.
  impl_->forwardClaimed(std::move(overlay), port, remote);
}

void LocalForwarder::gate(uint16_t port, const std::string& remote,
                          std::function<void(bool)> admit) {
  impl_->gate(port, remote, std::move(admit));
}

const ForwardStats& LocalForwarder::stats() const {
  return impl_->stats_;
}

}  // namespace wsa::netstack
