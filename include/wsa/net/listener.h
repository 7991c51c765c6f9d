#pragma once
// Listening sockets on an Asio loop: "host:port", "[v6]:port", ":port" (all interfaces, both
// IPv4 and IPv6), "localhost:port" (IPv4 loopback) or "unix:/path" (a stale socket file is
// replaced; removed again on close). Accepted TCP sockets get TCP_NODELAY. Accept errors such as
// EMFILE are logged and retried after a short pause instead of spinning.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::net {

class Listener {
 public:
  struct Options {
    bool allow_unix = true;
    std::string what = "listener";  // for errors and logs: "SSH", "reconnecting PTY", ...
  };
  // Exactly one of the two is used: a ByteStream on the loop, or the raw descriptor (the
  // receiver owns it) with the peer's "ip:port" (or "unix").
  struct Handlers {
    std::function<void(ByteStreamPtr)> on_stream;
    std::function<void(int fd, std::string peer)> on_fd;
  };

  static Result<std::unique_ptr<Listener>> open(asio::io_context& io, const std::string& address,
                                                Handlers handlers, Options options);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound address: "127.0.0.1:41234" when port 0 was asked for, or "unix:/path".
  const std::string& address() const;
  // Stops accepting. Idempotent; also done by the destructor. Loop thread only.
  void close();

  class Impl;

 private:
  explicit Listener(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// Opens a listener that hands each accepted stream to `serve` and keeps it in `into`; returns
// the bound address. The common case for servers on the loop.
Result<std::string> listenStreams(asio::io_context& io, const std::string& address,
                                  std::string what, std::function<void(ByteStreamPtr)> serve,
                                  std::vector<std::unique_ptr<Listener>>& into);

// The same for a server object owned elsewhere: streams go to `target->serve()` while it
// lives (the listener may outlive it by a callback).
template <typename T>
Result<std::string> listenStreamsTo(asio::io_context& io, const std::string& address,
                                    std::string what, std::weak_ptr<T> target,
                                    std::vector<std::unique_ptr<Listener>>& into) {
  return listenStreams(
      io, address, std::move(what),
      [target](ByteStreamPtr stream) {
        if (auto t = target.lock()) t->serve(std::move(stream));
      },
      into);
}

}  // namespace wsa::net
