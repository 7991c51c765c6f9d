#include "wsa/http/server.h"

#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <set>

#include "wsa/common/logging.h"
#include "wsa/common/strings.h"
#include "wsa/net/listener.h"

namespace wsa::http {

namespace {

std::string serialize(const Response& r, bool keep_alive, bool head_only) {
  std::string out;
  out.reserve(r.body.size() + 256);
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += reasonPhrase(r.status);
  out += "\r\n";
  for (const auto& h : r.headers) {
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Connection")) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

}  // namespace

class Connection;

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  Impl(asio::io_context& io, Router router, ServerOptions options)
      : io_(io),
        router_(std::move(router)),
        options_(std::move(options)),
        log_(logging::get("http")) {}

  void accept(net::ByteStreamPtr stream);
  void remove(Connection* c);

  asio::io_context& io_;
  Router router_;
  ServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::set<std::shared_ptr<Connection>> connections_;
  std::atomic<size_t> connection_count_{0};  // readable from any thread
  bool stopped_ = false;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Server::Impl> server, net::ByteStreamPtr stream)
      : server_(std::move(server)),
        stream_(std::move(stream)),
        timer_(server_->io_),
        parser_(server_->options_.limits) {}

  void start() {
    armTimer(server_->options_.idle_timeout);
    read();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    stream_->close();
    if (auto s = server_) s->remove(this);
  }

  void rejectBusy() {
    keep_alive_ = false;
    write(serialize(Response::error(503, "too many connections"), false, false));
  }

 private:
  void armTimer(std::chrono::milliseconds d) {
    ++timer_generation_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen = timer_generation_](std::error_code ec) {
      if (ec || gen != self->timer_generation_ || self->closed_) return;
      self->close();
    });
  }

  void read() {
    stream_->asyncReadSome(
        buf_, sizeof(buf_),
        [self = shared_from_this()](std::error_code ec, size_t n) { self->onRead(ec, n); });
  }

  void onRead(std::error_code ec, size_t n) {
    if (closed_) return;
    if (ec) {
      close();
      return;
    }
    bool was_partial = parser_.hasPartialRequest();
    parser_.feed(std::string_view(buf_, n));
    process(was_partial);
  }

  void process(bool was_partial) {
    switch (parser_.state()) {
      case RequestParser::State::kError: {
        keep_alive_ = false;
        Request r;
        r.method = "?";
        if (server_->options_.on_response) {
          server_->options_.on_response(r, parser_.errorStatus(), std::chrono::nanoseconds(0));
        }
        write(serialize(Response::error(parser_.errorStatus(), parser_.errorMessage()), false,
                        false));
        return;
      }
      case RequestParser::State::kComplete:
        handle();
        return;
      case RequestParser::State::kNeedMore:
        if (!was_partial && parser_.hasPartialRequest()) {
          armTimer(server_->options_.header_timeout);
        }
        read();
        return;
    }
  }

  void handle() {
    ++timer_generation_;  // the handler's time is not bounded by the read timers
    timer_.cancel();
    auto req = std::make_shared<Request>(parser_.take());
    req->remote = stream_->remoteAddress();
    keep_alive_ = req->keepAlive();
    auto start = std::chrono::steady_clock::now();
    std::weak_ptr<Connection> weak = shared_from_this();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    asio::io_context& io = server_->io_;
    Responder respond = [weak, req, start, answered, &io](Response resp) {
      if (answered->exchange(true)) return;
      asio::post(io, [weak, req, start, resp = std::move(resp)]() mutable {
        auto self = weak.lock();
        if (!self || self->closed_) return;
        if (self->server_->options_.on_response) {
          self->server_->options_.on_response(*req, resp.status,
                                              std::chrono::steady_clock::now() - start);
        }
        self->write(serialize(resp, self->keep_alive_, req->method == "HEAD"));
      });
    };
    try {
      server_->router_.dispatch(*req, std::move(respond));
    } catch (const std::exception& e) {
      server_->log_->error("handler for {} {} threw: {}", req->method, req->path, e.what());
      keep_alive_ = false;
      write(serialize(Response::error(500, "internal error"), false, false));
    }
  }

  void write(std::string data) {
    if (closed_) return;
    out_ = std::move(data);
    armTimer(server_->options_.write_timeout);
    stream_->asyncWrite(
        out_.data(), out_.size(),
        [self = shared_from_this()](std::error_code ec, size_t) { self->onWritten(ec); });
  }

  void onWritten(std::error_code ec) {
    if (closed_) return;
    if (ec || !keep_alive_ || server_->stopped_) {
      close();
      return;
    }
    armTimer(server_->options_.idle_timeout);
    parser_.advance();
    process(false);
  }

  std::shared_ptr<Server::Impl> server_;
  net::ByteStreamPtr stream_;
  asio::steady_timer timer_;
  uint64_t timer_generation_ = 0;
  RequestParser parser_;
  char buf_[16384];
  std::string out_;
  bool keep_alive_ = true;
  bool closed_ = false;
};

void Server::Impl::accept(net::ByteStreamPtr stream) {
  auto c = std::make_shared<Connection>(shared_from_this(), std::move(stream));
  bool busy = connections_.size() >= options_.max_connections;
  connections_.insert(c);
  connection_count_ = connections_.size();
  if (busy) {
    log_->warn("connection limit of {} reached; refusing a connection", options_.max_connections);
    c->rejectBusy();
    return;
  }
  c->start();
}

void Server::Impl::remove(Connection* c) {
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->get() == c) {
      connections_.erase(it);
      connection_count_ = connections_.size();
      return;
    }
  }
}

Server::Server(asio::io_context& io, Router router, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(router), std::move(options))) {}

Server::~Server() {
  stop();
}

Result<std::string> Server::listen(const std::string& address) {
  std::weak_ptr<Impl> weak = impl_;
  return net::listenStreams(
      impl_->io_, address, "HTTP server",
      [weak](net::ByteStreamPtr stream) {
        if (auto impl = weak.lock(); impl && !impl->stopped_) impl->accept(std::move(stream));
      },
      impl_->listeners_);
}

void Server::serveStream(net::ByteStreamPtr stream) {
  if (impl_->stopped_) {
    stream->close();
    return;
  }
  impl_->accept(std::move(stream));
}

void Server::stop() {
  if (!impl_ || impl_->stopped_) return;
  impl_->stopped_ = true;
  for (auto& l : impl_->listeners_) l->close();
  auto conns = impl_->connections_;
  for (auto& c : conns) c->close();
  impl_->connections_.clear();
  impl_->connection_count_ = 0;
}

size_t Server::connectionCount() const {
  return impl_->connection_count_;
}

}  // namespace wsa::http
