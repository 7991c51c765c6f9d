#include "wsa/net/listener.h"

#include <sys/stat.h>
#include <unistd.h>

#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>

#include "wsa/common/logging.h"
#include "wsa/net/address.h"
#include "wsa/net/asio_stream.h"

namespace wsa::net {

class Listener::Impl : public std::enable_shared_from_this<Listener::Impl> {
 public:
  Impl(asio::io_context& io, Handlers h, Options o)
      : io_(io),
        handlers_(std::move(h)),
        options_(std::move(o)),
        retry_(io),
        log_(logging::get("net")) {}

  template <typename Acceptor>
  void acceptNext(Acceptor* acceptor) {
    std::weak_ptr<Impl> weak = shared_from_this();
    acceptor->async_accept(
        [weak, acceptor](std::error_code ec, typename Acceptor::protocol_type::socket s) {
          auto self = weak.lock();
          if (!self || self->closed_ || ec == asio::error::operation_aborted) return;
          if (ec) {
            // EMFILE, ENFILE, ENOBUFS...: pause instead of spinning on the error.
            self->log_->warn("{} on {}: accept failed: {}", self->options_.what, self->address_,
                             ec.message());
            self->retry_.expires_after(std::chrono::milliseconds(100));
            self->retry_.async_wait([weak, acceptor](std::error_code e) {
              auto s2 = weak.lock();
              if (!e && s2 && !s2->closed_) s2->acceptNext(acceptor);
            });
            return;
          }
          self->deliver(std::move(s));
          self->acceptNext(acceptor);
        });
  }

  template <typename Socket>
  void deliver(Socket s) {
    std::string peer = "unix";
    if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
      std::error_code ignored;
      s.set_option(asio::ip::tcp::no_delay(true), ignored);
      auto ep = s.remote_endpoint(ignored);
      peer = joinHostPort(ep.address().to_string(), ep.port());
    }
    if (handlers_.on_fd) {
      handlers_.on_fd(s.release(), std::move(peer));
    } else {
      handlers_.on_stream(std::make_unique<AsioStream<Socket>>(std::move(s)));
    }
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    std::error_code ec;
    if (tcp_) tcp_->close(ec);
    if (unix_) unix_->close(ec);
    retry_.cancel();
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }

  asio::io_context& io_;
  Handlers handlers_;
  Options options_;
  asio::steady_timer retry_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<asio::ip::tcp::acceptor> tcp_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> unix_;
  std::string unix_path_;
  std::string address_;
  bool closed_ = false;
};

Listener::Listener(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Listener::~Listener() {
  close();
}
const std::string& Listener::address() const {
  return impl_->address_;
}
void Listener::close() {
  if (impl_) impl_->close();
}

Result<std::unique_ptr<Listener>> Listener::open(asio::io_context& io, const std::string& address,
                                                 Handlers handlers, Options options) {
  auto parsed = parseListenAddress(address);
  if (!parsed) return makeError(parsed.error());
  const std::string what = options.what;
  if (parsed->is_unix && !options.allow_unix) {
    return makeError(what + " listens on TCP only (host:port), not \"" + address + "\"");
  }
  auto impl = std::make_shared<Impl>(io, std::move(handlers), std::move(options));
  std::error_code ec;
  if (parsed->is_unix) {
    struct stat st {};
    if (::lstat(parsed->path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      ::unlink(parsed->path.c_str());
    }
    impl->unix_ = std::make_unique<asio::local::stream_protocol::acceptor>(io);
    asio::local::stream_protocol::endpoint ep(parsed->path);
    impl->unix_->open(ep.protocol(), ec);
    if (!ec) impl->unix_->bind(ep, ec);
    if (!ec) impl->unix_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return makeError(what + ": listen on " + address + ": " + ec.message());
    impl->unix_path_ = parsed->path;
    impl->address_ = "unix:" + parsed->path;
    impl->acceptNext(impl->unix_.get());
    return std::unique_ptr<Listener>(new Listener(std::move(impl)));
  }
  asio::ip::address addr;
  if (parsed->host.empty()) {
    addr = asio::ip::address_v6::any();
  } else if (parsed->host == "localhost") {
    addr = asio::ip::address_v4::loopback();
  } else {
    addr = asio::ip::make_address(parsed->host, ec);
    if (ec) {
      return makeError(what + ": listen on " + address + ": \"" + parsed->host +
                       "\" is not an IP address");
    }
  }
  asio::ip::tcp::endpoint ep(addr, parsed->port);
  impl->tcp_ = std::make_unique<asio::ip::tcp::acceptor>(io);
  auto& acc = *impl->tcp_;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && addr.is_v6() && parsed->host.empty()) acc.set_option(asio::ip::v6_only(false), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return makeError(what + ": listen on " + address + ": " + ec.message());
  auto bound = acc.local_endpoint(ec);
  impl->address_ = joinHostPort(bound.address().to_string(), bound.port());
  impl->acceptNext(impl->tcp_.get());
  return std::unique_ptr<Listener>(new Listener(std::move(impl)));
}

Result<std::string> listenStreams(asio::io_context& io, const std::string& address,
                                  std::string what, std::function<void(ByteStreamPtr)> serve,
                                  std::vector<std::unique_ptr<Listener>>& into) {
  Listener::Handlers h;
  h.on_stream = std::move(serve);
  auto l = Listener::open(io, address, std::move(h), {true, std::move(what)});
  if (!l) return makeError(l.error());
  std::string bound = (*l)->address();
  into.push_back(std::move(*l));
  return bound;
}

}  // namespace wsa::net
