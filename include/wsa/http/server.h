#pragma once
// A small HTTP/1.1 server on the process's Asio loop: keep-alive, pipelining, bounded header
// and body sizes, header/idle/write timeouts, a connection cap. Handlers run on the loop and
// must not block; they answer through the Responder (from any thread).

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "wsa/common/result.h"
#include "wsa/http/parser.h"
#include "wsa/http/router.h"
#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::http {

struct ServerOptions {
  ParserLimits limits;
  std::chrono::milliseconds header_timeout{20000};  // a started request must arrive within this
  std::chrono::milliseconds idle_timeout{60000};    // keep-alive idle time
  std::chrono::milliseconds write_timeout{20000};   // a response must be written within this
  size_t max_connections = 256;                     // beyond: 503 and close
  // Called after each response is queued (metrics, access logs).
  std::function<void(const Request&, int status, std::chrono::nanoseconds elapsed)> on_response;
};

class Server {
 public:
  Server(asio::io_context& io, Router router, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens on "host:port" or "unix:/path" (a stale socket file is replaced). Returns the bound
  // address ("127.0.0.1:41234" when port 0 was asked for). Call on the loop thread or before
  // the loop runs.
  Result<std::string> listen(const std::string& address);
  // Serves a stream accepted elsewhere (for example on the overlay).
  void serveStream(net::ByteStreamPtr stream);
  // Stops accepting and closes every connection. Idempotent. Loop thread only.
  void stop();
  size_t connectionCount() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace wsa::http
