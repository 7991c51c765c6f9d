#include <asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "wsa/common/logging.h"
#include "wsa/net/listener.h"
#include "wsa/speedtest/speedtest.h"

namespace wsa::speedtest {

namespace {

// One data frame, shared by every download: the payload's content does not matter.
const std::string& dataFrame() {
  static const std::string frame = [] {
    std::string f = frameHeader('D', static_cast<uint32_t>(kBlockSize));
    f.append(kBlockSize, '\x5a');
    return f;
  }();
  return frame;
}

}  // namespace

class Conn;

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  Impl(asio::io_context& io, Clock& clock, ServerOptions o, ServerHooks h)
      : io_(io), clock_(clock), opts_(o), hooks_(std::move(h)), log_(logging::get("speedtest")) {}
  void serve(net::ByteStreamPtr stream);

  asio::io_context& io_;
  Clock& clock_;
  ServerOptions opts_;
  ServerHooks hooks_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::set<std::shared_ptr<Conn>> conns_;
  size_t active_ = 0;
  bool stopped_ = false;
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(std::shared_ptr<Server::Impl> srv, net::ByteStreamPtr stream)
      : srv_(std::move(srv)),
        stream_(std::move(stream)),
        timer_(srv_->clock_.createTimer()),
        peer_(stream_->remoteAddress()) {}

  void start() {
    auto weak = weak_from_this();
    timer_->schedule(srv_->opts_.config_timeout, [weak] {
      if (auto s = weak.lock()) s->close("no config in time");
    });
    readConfig();
  }

  void close(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    timer_->cancel();
    stream_->close();
    if (counted_) {
      srv_->active_--;
      bool ok = why.empty();
      if (!ok) {
        srv_->log_->info("speed test ({}) from {} failed: {}", directionName(config_.direction),
                         peer_, why);
      }
      if (srv_->hooks_.done) srv_->hooks_.done(config_.direction, ok, bytes_);
    } else if (!why.empty()) {
      srv_->log_->info("speed test connection from {} closed: {}", peer_, why);
    }
    srv_->conns_.erase(shared_from_this());
  }

 private:
  void readConfig() {
    auto self = shared_from_this();
    stream_->asyncReadSome(buf_, sizeof(buf_), [self](std::error_code ec, size_t n) {
      if (self->closed_) return;
      if (ec) {
        self->close("connection closed before the config");
        return;
      }
      self->line_.append(self->buf_, n);
      auto nl = self->line_.find('\n');
      if (nl == std::string::npos) {
        if (self->line_.size() > kMaxConfigLine) {
          self->reject("config line longer than " + std::to_string(kMaxConfigLine) + " bytes");
          return;
        }
        self->readConfig();
        return;
      }
      std::string rest = self->line_.substr(nl + 1);
      self->line_.resize(nl);
      self->onConfig(std::move(rest));
    });
  }

  void reject(const std::string& why) {
    reply_ = nlohmann::json{{"error", why}}.dump() + "\n";
    auto self = shared_from_this();
    stream_->asyncWrite(reply_.data(), reply_.size(),
                        [self, why](std::error_code, size_t) { self->close("rejected: " + why); });
  }

  void onConfig(std::string rest) {
    auto cfg = parseConfig(line_, srv_->opts_.limits);
    if (!cfg) {
      reject(cfg.error());
      return;
    }
    if (srv_->active_ >= srv_->opts_.max_concurrent) {
      reject("too many speed tests running (" + std::to_string(srv_->active_) +
             "); try again later");
      return;
    }
    config_ = *cfg;
    counted_ = true;
    srv_->active_++;
    auto weak = weak_from_this();
    timer_->schedule(config_.duration + srv_->opts_.grace, [weak] {
      if (auto s = weak.lock()) s->close("timed out");
    });
    reply_ = "{\"ok\":true,\"version\":" + std::to_string(kVersion) + "}\n";
    auto self = shared_from_this();
    stream_->asyncWrite(reply_.data(), reply_.size(),
                        [self, rest = std::move(rest)](std::error_code ec, size_t) {
                          if (self->closed_) return;
                          if (ec) {
                            self->close("write failed: " + ec.message());
                            return;
                          }
                          self->start_ = self->srv_->clock_.now();
                          if (self->config_.direction == Direction::kDownload) {
                            self->deadline_ = self->start_ + self->config_.duration;
                            self->watchPeer();
                            self->sendData();
                          } else {
                            self->meter_ = std::make_unique<Meter>(self->start_);
                            if (!rest.empty()) self->onUpload(rest.data(), rest.size());
                            if (!self->closed_) self->readUpload();
                          }
                        });
  }

  // Download: D frames until the deadline, then E, then close.
  void sendData() {
    auto self = shared_from_this();
    if (srv_->clock_.now() >= deadline_) {
      reply_ = frameHeader('E', 0);
      stream_->asyncWrite(reply_.data(), reply_.size(), [self](std::error_code ec, size_t) {
        self->close(ec ? "write failed: " + ec.message() : "");
      });
      return;
    }
    const std::string& f = dataFrame();
    stream_->asyncWrite(f.data(), f.size(), [self](std::error_code ec, size_t) {
      if (self->closed_) return;
      if (ec) {
        self->close("write failed: " + ec.message());
        return;
      }
      self->bytes_ += kBlockSize;
      self->sendData();
    });
  }

  // During a download the client sends nothing; a read notices it leaving.
  void watchPeer() {
    auto self = shared_from_this();
    stream_->asyncReadSome(buf_, sizeof(buf_), [self](std::error_code ec, size_t) {
      if (self->closed_) return;
      if (ec) {
        self->close("the client left");
        return;
      }
      self->watchPeer();
    });
  }

  void readUpload() {
    auto self = shared_from_this();
    stream_->asyncReadSome(buf_, sizeof(buf_), [self](std::error_code ec, size_t n) {
      if (self->closed_) return;
      if (ec) {
        self->close("connection closed during the upload");
        return;
      }
      self->onUpload(self->buf_, n);
      if (!self->closed_ && !self->ended_) self->readUpload();
    });
  }

  void onUpload(const char* data, size_t n) {
    MonoTime now = srv_->clock_.now();
    while (n > 0 && !closed_ && !ended_) {
      if (payload_left_ > 0) {
        size_t take = std::min<size_t>(n, payload_left_);
        meter_->add(now, take);
        bytes_ += take;
        payload_left_ -= take;
        data += take;
        n -= take;
        continue;
      }
      size_t need = kFrameHeader - header_.size();
      size_t take = std::min(n, need);
      header_.append(data, take);
      data += take;
      n -= take;
      if (header_.size() < kFrameHeader) break;
      char type = header_[0];
      uint32_t len = (static_cast<uint32_t>(static_cast<unsigned char>(header_[1])) << 24) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(header_[2])) << 16) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(header_[3])) << 8) |
                     static_cast<uint32_t>(static_cast<unsigned char>(header_[4]));
      header_.clear();
      if (type == 'D' && len <= kMaxFramePayload) {
        payload_left_ = len;
      } else if (type == 'E' && len == 0) {
        ended_ = true;
        sendResults(now);
      } else {
        close("bad frame from the client (type " + std::to_string(static_cast<int>(type)) +
              ", length " + std::to_string(len) + ")");
      }
    }
  }

  void sendResults(MonoTime end) {
    std::string body = resultsToJson(meter_->finish(end, Direction::kUpload));
    reply_ = frameHeader('R', static_cast<uint32_t>(body.size())) + body;
    auto self = shared_from_this();
    stream_->asyncWrite(reply_.data(), reply_.size(), [self](std::error_code ec, size_t) {
      self->close(ec ? "write failed: " + ec.message() : "");
    });
  }

  std::shared_ptr<Server::Impl> srv_;
  net::ByteStreamPtr stream_;
  std::unique_ptr<Timer> timer_;
  std::string peer_;
  char buf_[64 * 1024];
  std::string line_;
  std::string reply_;
  Config config_;
  MonoTime start_{};
  MonoTime deadline_{};
  std::unique_ptr<Meter> meter_;
  std::string header_;
  size_t payload_left_ = 0;
  uint64_t bytes_ = 0;
  bool counted_ = false;
  bool ended_ = false;
  bool closed_ = false;
};

void Server::Impl::serve(net::ByteStreamPtr stream) {
  if (stopped_ || conns_.size() >= opts_.max_connections) {
    if (!stopped_) log_->warn("speed test: refusing a connection: {} open", conns_.size());
    stream->close();
    return;
  }
  auto c = std::make_shared<Conn>(shared_from_this(), std::move(stream));
  conns_.insert(c);
  c->start();
}

Server::Server(asio::io_context& io, Clock& clock, ServerOptions options, ServerHooks hooks)
    : impl_(std::make_shared<Impl>(io, clock, options, std::move(hooks))) {}

Server::~Server() {
  shutdown();
}

Result<std::string> Server::listen(const std::string& address) {
  return net::listenStreamsTo(impl_->io_, address, "speed test", std::weak_ptr<Impl>(impl_),
                              impl_->listeners_);
}

void Server::serve(net::ByteStreamPtr stream) {
  impl_->serve(std::move(stream));
}

void Server::stopAccepting() {
  impl_->stopped_ = true;
  for (auto& l : impl_->listeners_) l->close();
}

void Server::shutdown() {
  if (!impl_) return;
  stopAccepting();
  auto conns = impl_->conns_;
  for (auto& c : conns) c->close("agent shutting down");
}

size_t Server::active() const {
  return impl_->active_;
}

}  // namespace wsa::speedtest
