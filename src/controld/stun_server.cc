#include "controld/stun_server.h"

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/ip/v6_only.hpp>
#include <string_view>

#include "wsa/common/metrics.h"
#include "wsa/net/address.h"
#include "wsa/stun/stun.h"

namespace wsa::controld {

bool TokenBucket::take(double rate, double burst, Time now) {
  if (now > last_) {
    tokens_ = std::min(burst, tokens_ + rate * std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

size_t StunLimiter::KeyHash::operator()(const Key& k) const {
  return std::hash<std::string_view>()(
      std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
}

StunLimiter::StunLimiter(StunLimits limits, Time now)
    : limits_(limits), global_(limits.global_burst, now) {}

StunLimiter::Verdict StunLimiter::allow(const wg::Endpoint& source, Time now) {
  Key key{};
  key[0] = source.v6 ? 6 : 4;
  std::copy(source.addr.begin(), source.addr.end(), key.begin() + 1);
  auto it = table_.find(key);
  if (it != table_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently seen
  } else {
    if (limits_.max_sources == 0) return Verdict::kSourceLimited;
    if (table_.size() >= limits_.max_sources) {
      table_.erase(lru_.back().key);
      lru_.pop_back();
      ++evicted_;
    }
    lru_.push_front(Entry{key, TokenBucket(limits_.source_burst, now)});
    it = table_.emplace(key, lru_.begin()).first;
  }
  if (!it->second->bucket.take(limits_.source_rate, limits_.source_burst, now)) {
    return Verdict::kSourceLimited;
  }
  if (!global_.take(limits_.global_rate, limits_.global_burst, now)) {
    return Verdict::kGlobalLimited;
  }
  return Verdict::kAllowed;
}

// One UDP socket. Handlers hold it by shared_ptr and touch the server only when the socket
// was not closed (the server closes every socket before it goes).
class StunServer::Listener : public std::enable_shared_from_this<StunServer::Listener> {
 public:
  Listener(asio::io_context& io, StunServer* server) : socket(io), server_(server) {}

  void receive() {
    socket.async_wait(asio::socket_base::wait_read,
                      [self = shared_from_this()](std::error_code ec) {
                        if (ec || !self->socket.is_open()) return;
                        self->drain();
                        self->receive();
                      });
  }

  // Up to 64 datagrams per wakeup, so one busy socket cannot hold the loop.
  void drain() {
    for (int i = 0; i < 64; ++i) {
      std::error_code ec;
      size_t n = socket.receive_from(asio::buffer(buf_), from, 0, ec);
      if (ec) return;  // would_block, or an ICMP error reported on the socket
      server_->handle(*this, buf_.data(), n, wg::Endpoint::fromSockaddr(from.data()));
    }
  }

  asio::ip::udp::socket socket;
  asio::ip::udp::endpoint from;  // of the datagram being handled, as the socket sees it

 private:
  StunServer* server_;
  std::array<uint8_t, 1500> buf_{};
};

StunServer::StunServer(StunLimits limits, std::shared_ptr<spdlog::logger> log)
    : log_(std::move(log)), limiter_(limits, std::chrono::steady_clock::now()) {}

StunServer::~StunServer() {
  stop();
}

void StunServer::stop() {
  for (auto& l : listeners_) {
    std::error_code ec;
    l->socket.close(ec);
  }
}

std::vector<uint16_t> StunServer::ports() const {
  std::vector<uint16_t> out;
  for (const auto& l : listeners_) {
    std::error_code ec;
    auto ep = l->socket.local_endpoint(ec);
    if (!ec && std::find(out.begin(), out.end(), ep.port()) == out.end()) {
      out.push_back(ep.port());
    }
  }
  return out;
}

Result<std::unique_ptr<StunServer>> StunServer::start(asio::io_context& io,
                                                      const std::vector<std::string>& listen,
                                                      StunLimits limits,
                                                      std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<StunServer> s(new StunServer(limits, std::move(log)));
  for (const auto& text : listen) {
    auto parsed = net::parseListenAddress(text);
    if (!parsed) return makeError("--stun-listen: " + parsed.error());
    if (parsed->is_unix)
      return makeError("--stun-listen " + text + ": STUN is UDP, not a socket path");
    asio::ip::udp::endpoint bind_ep;
    bool all = parsed->host.empty();
    if (all) {
      bind_ep = asio::ip::udp::endpoint(asio::ip::udp::v6(), parsed->port);
    } else {
      std::error_code ec;
      auto addr = asio::ip::make_address(parsed->host, ec);
      if (ec) {
        // A host name: resolved once, at start (this blocks, before the loop runs).
        asio::ip::udp::resolver resolver(io);
        auto results = resolver.resolve(parsed->host, std::to_string(parsed->port),
                                        asio::ip::udp::resolver::passive, ec);
        if (ec || results.empty()) {
          return makeError("--stun-listen " + text + ": cannot resolve " + parsed->host + ": " +
                           (ec ? ec.message() : "no addresses"));
        }
        bind_ep = results.begin()->endpoint();
      } else {
        bind_ep = asio::ip::udp::endpoint(addr, parsed->port);
      }
    }
    auto l = std::make_shared<Listener>(io, s.get());
    std::error_code ec;
    l->socket.open(bind_ep.protocol(), ec);
    if (!ec && all) l->socket.set_option(asio::ip::v6_only(false), ec);  // IPv4 too
    if (!ec) l->socket.bind(bind_ep, ec);
    if (!ec) l->socket.non_blocking(true, ec);
    if (ec) return makeError("--stun-listen " + text + ": " + ec.message());
    auto local = l->socket.local_endpoint(ec);
    if (ec) return makeError("--stun-listen " + text + ": " + ec.message());
    s->addresses_.push_back(net::joinHostPort(local.address().to_string(), local.port()));
    s->listeners_.push_back(l);
  }
  for (auto& l : s->listeners_) l->receive();
  return s;
}

void StunServer::handle(Listener& l, const uint8_t* data, size_t size, const wg::Endpoint& from) {
  auto req = stun::parseBindingRequest({data, size});
  if (!req) {
    ++malformed_;
    return;
  }
  auto verdict = limiter_.allow(from, std::chrono::steady_clock::now());
  sources_ = limiter_.sources();
  evicted_ = limiter_.evicted();
  if (verdict != StunLimiter::Verdict::kAllowed) {
    ++rate_limited_;
    // At most one line per 1000 refusals (a flood must not flood the log as well).
    if (rate_limited_ >= limited_logged_ + 1000 || limited_logged_ == 0) {
      limited_logged_ = rate_limited_;
      log_->warn("STUN: rate limited ({} limit), last from {}; {} refused in all",
                 verdict == StunLimiter::Verdict::kSourceLimited ? "per-source" : "global",
                 from.toString(), rate_limited_.load());
    }
    return;
  }
  stun::MessageOptions o;
  o.fingerprint = true;
  auto resp = stun::buildBindingResponse(req->id, from, o, /*with_mapped_address=*/true);
  std::error_code ec;
  l.socket.send_to(asio::buffer(resp), l.from, 0, ec);
  if (ec) {
    ++send_failed_;
    return;
  }
  ++answered_;
}

void StunServer::collect(metrics::Families& out) const {
  out.counters("wsa_controld_stun_requests_total",
               "STUN datagrams received, by what became of them: answered (a Binding request "
               "answered), rate_limited (refused by the per-source or the global bound), "
               "malformed (not a Binding request), send_failed (the answer could not be sent)")
      .add(answered_.load(), {{"result", "answered"}})
      .add(rate_limited_.load(), {{"result", "rate_limited"}})
      .add(malformed_.load(), {{"result", "malformed"}})
      .add(send_failed_.load(), {{"result", "send_failed"}});
  out.gauge("wsa_controld_stun_sources", "Source addresses the STUN rate limiter tracks",
            sources_.load());
  out.counter("wsa_controld_stun_sources_evicted_total",
              "Source addresses dropped from the STUN rate limiter's full table (least recently "
              "seen first)",
              evicted_.load());
}

}  // namespace wsa::controld
