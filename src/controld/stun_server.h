#pragma once
// controld's STUN server (RFC 8489 Binding): answers each Binding request with the address it
// came from, on controld's Asio loop (the HTTP server's thread). Everything else — other STUN
// messages, other protocols, truncated datagrams — is counted as malformed and dropped.
//
// Flood bound: a token bucket per source IP address (the port is not part of the key, so a
// host cannot dodge it by changing ports), in a table of at most `max_sources` entries (the
// least recently seen source is evicted), and one global token bucket behind it. A request
// the per-source bucket refuses does not take from the global one, so one flooding source
// cannot starve the others. Answers are the size of the request or barely larger: no
// amplification.

#include <spdlog/logger.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/wg/endpoint.h"

namespace asio {
class io_context;
}
namespace wsa::metrics {
class Families;
}

namespace wsa::controld {

struct StunLimits {
  double source_rate = 20;  // requests per second per source address
  double source_burst = 50;
  double global_rate = 20000;  // requests per second in all
  double global_burst = 20000;
  size_t max_sources = 4096;  // tracked source addresses
};

class TokenBucket {
 public:
  using Time = std::chrono::steady_clock::time_point;
  TokenBucket(double burst, Time now) : tokens_(burst), last_(now) {}
  // Refills for the time since the last call, then takes one token if there is one.
  bool take(double rate, double burst, Time now);

 private:
  double tokens_;
  Time last_;
};

// The two levels of token buckets. Not thread-safe (the loop's).
class StunLimiter {
 public:
  using Time = TokenBucket::Time;
  enum class Verdict { kAllowed, kSourceLimited, kGlobalLimited };

  StunLimiter(StunLimits limits, Time now);
  // `source`'s port is ignored.
  Verdict allow(const wg::Endpoint& source, Time now);

  size_t sources() const { return table_.size(); }
  uint64_t evicted() const { return evicted_; }

 private:
  using Key = std::array<uint8_t, 17>;  // family, address
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    Key key;
    TokenBucket bucket;
  };
  StunLimits limits_;
  TokenBucket global_;
  std::list<Entry> lru_;  // most recently seen first
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> table_;
  uint64_t evicted_ = 0;
};

class StunServer {
 public:
  // Binds every address ("host:port", "[v6]:port", ":port" for all interfaces, IPv4 and IPv6;
  // port 0 picks one) and starts receiving on `io`. Errors name the address.
  static Result<std::unique_ptr<StunServer>> start(asio::io_context& io,
                                                   const std::vector<std::string>& listen,
                                                   StunLimits limits,
                                                   std::shared_ptr<spdlog::logger> log);
  ~StunServer();
  StunServer(const StunServer&) = delete;
  StunServer& operator=(const StunServer&) = delete;

  // The bound addresses, in the order given ("127.0.0.1:3478", "[::]:3478").
  const std::vector<std::string>& addresses() const { return addresses_; }
  std::vector<uint16_t> ports() const;
  // Closes the sockets. On the loop (or once it has stopped).
  void stop();

  // The collector (any thread): wsa_controld_stun_requests_total{result}, the source table.
  void collect(metrics::Families& out) const;

  class Listener;

 private:
  StunServer(StunLimits limits, std::shared_ptr<spdlog::logger> log);
  void handle(Listener& l, const uint8_t* data, size_t size, const wg::Endpoint& from);
  friend class Listener;

  std::shared_ptr<spdlog::logger> log_;
  StunLimiter limiter_;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::vector<std::string> addresses_;
  std::atomic<uint64_t> answered_{0};
  std::atomic<uint64_t> rate_limited_{0};
  std::atomic<uint64_t> malformed_{0};
  std::atomic<uint64_t> send_failed_{0};
  std::atomic<uint64_t> sources_{0};
  std::atomic<uint64_t> evicted_{0};
  uint64_t limited_logged_ = 0;
};

}  // namespace wsa::controld
