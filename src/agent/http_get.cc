#include "agent/http_get.h"

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>
#include <charconv>
#include <optional>

namespace wsa::agent {

namespace {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

Result<Url> parseUrl(const std::string& url) {
  Url u;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
    u.port = "80";
  } else if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
    u.tls = true;
    u.port = "443";
  } else {
    return makeError("unsupported URL \"" + url + "\" (want http:// or https://)");
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return makeError("bad IPv6 host in \"" + url + "\"");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      u.port = authority.substr(close + 2);
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
  }
  if (u.host.empty()) return makeError("no host in \"" + url + "\"");
  return u;
}

class Get final : public HttpGet, public std::enable_shared_from_this<Get> {
 public:
  Get(asio::io_context& io, Url u, std::function<void(Result<int>)> done)
      : io_(io), u_(std::move(u)), resolver_(io), timer_(io), done_(std::move(done)) {}

  void start(std::chrono::milliseconds timeout) {
    auto self = shared_from_this();
    timer_.expires_after(timeout);
    timer_.async_wait([self, timeout](std::error_code ec) {
      if (!ec) self->fail("timed out after " + std::to_string(timeout.count()) + " ms");
    });
    if (u_.tls) {
      ssl_ctx_.emplace(asio::ssl::context::tls_client);
      ssl_ctx_->set_verify_mode(asio::ssl::verify_none);
      tls_.emplace(io_, *ssl_ctx_);
      SSL_set_tlsext_host_name(tls_->native_handle(), u_.host.c_str());
    } else {
      plain_.emplace(io_);
    }
    resolver_.async_resolve(u_.host, u_.port,
                            [self](std::error_code ec, asio::ip::tcp::resolver::results_type r) {
                              if (ec) return self->fail("resolve: " + ec.message());
                              self->connect(r);
                            });
  }
  void cancel() override { fail("cancelled"); }

 private:
  asio::ip::tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }

  void connect(const asio::ip::tcp::resolver::results_type& r) {
    auto self = shared_from_this();
    asio::async_connect(socket(), r, [self](std::error_code ec, const asio::ip::tcp::endpoint&) {
      if (ec) return self->fail("connect: " + ec.message());
      if (self->tls_) {
        self->tls_->async_handshake(asio::ssl::stream_base::client, [self](std::error_code e) {
          if (e) return self->fail("tls: " + e.message());
          self->send();
        });
      } else {
        self->send();
      }
    });
  }
  void send() {
    request_ = "GET " + u_.target + " HTTP/1.1\r\nHost: " + u_.host +
               "\r\nUser-Agent: wsa-agent-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    auto self = shared_from_this();
    auto on_written = [self](std::error_code ec, size_t) {
      if (ec) return self->fail("write: " + ec.message());
      self->readHead();
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(request_), on_written);
    } else {
      asio::async_write(*plain_, asio::buffer(request_), on_written);
    }
  }
  void readHead() {
    auto self = shared_from_this();
    auto on_read = [self](std::error_code ec, size_t) {
      if (ec) return self->fail("read: " + ec.message());
      self->parse();
    };
    if (tls_) {
      asio::async_read_until(*tls_, buf_, "\r\n", on_read);
    } else {
      asio::async_read_until(*plain_, buf_, "\r\n", on_read);
    }
  }
  void parse() {
    std::string line(asio::buffers_begin(buf_.data()), asio::buffers_end(buf_.data()));
    // "HTTP/1.1 200 OK"
    if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) return fail("malformed response");
    int code = 0;
    auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 12, code);
    if (ec != std::errc() || code < 100 || code > 999) return fail("malformed status line");
    finish(code);
  }
  void fail(const std::string& why) { finish(makeError(why)); }
  void finish(Result<int> r) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    resolver_.cancel();
    std::error_code ec;
    if (plain_) plain_->close(ec);
    if (tls_) tls_->next_layer().close(ec);
    auto d = std::move(done_);
    if (d) d(std::move(r));
  }

  asio::io_context& io_;
  Url u_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer timer_;
  std::optional<asio::ssl::context> ssl_ctx_;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket>> tls_;
  std::optional<asio::ip::tcp::socket> plain_;
  asio::streambuf buf_{64 * 1024};
  std::string request_;
  std::function<void(Result<int>)> done_;
  bool finished_ = false;
};

class Handle final : public HttpGet {
 public:
  explicit Handle(std::weak_ptr<Get> g) : g_(std::move(g)) {}
  ~Handle() override { cancel(); }
  void cancel() override {
    if (auto g = g_.lock()) g->cancel();
  }

 private:
  std::weak_ptr<Get> g_;
};

}  // namespace

std::unique_ptr<HttpGet> httpGet(asio::io_context& io, const std::string& url,
                                 std::chrono::milliseconds timeout,
                                 std::function<void(Result<int>)> done) {
  auto u = parseUrl(url);
  if (!u) {
    done(makeError(u.error()));
    return std::make_unique<Handle>(std::weak_ptr<Get>());
  }
  auto g = std::make_shared<Get>(io, *u, std::move(done));
  g->start(timeout);
  return std::make_unique<Handle>(g);
}

}  // namespace wsa::agent
