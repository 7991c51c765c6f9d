#pragma once
// ByteStream: the one seam between protocol code (HTTP, SSH, PTY, speedtest) and transports
// (kernel TCP/unix sockets now, the overlay's userspace TCP later). All callbacks run on the
// stream's event loop. After close(), pending operations complete with an error and no new
// callbacks are started.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

namespace wsa::net {

class ByteStream {
 public:
  using IoHandler = std::function<void(std::error_code, std::size_t)>;
  virtual ~ByteStream() = default;
  // Reads at least one byte (or fails). The buffer must stay valid until the handler runs.
  virtual void asyncReadSome(void* data, std::size_t size, IoHandler handler) = 0;
  // Writes all bytes (or fails). The buffer must stay valid until the handler runs.
  virtual void asyncWrite(const void* data, std::size_t size, IoHandler handler) = 0;
  // Ends our direction (TCP FIN); call it after the last write has completed. Reading goes on.
  virtual void shutdownWrite() = 0;
  virtual void close() = 0;
  // Ends the stream at once and tells the peer it failed (TCP: a reset instead of a FIN), e.g.
  // "connection refused" for a forwarded port nobody listens on. Streams without such a signal
  // close.
  virtual void abort() { close(); }
  // "ip:port", "[ip6]:port" or "unix" — for logs and audit.
  virtual std::string remoteAddress() const = 0;
};

using ByteStreamPtr = std::unique_ptr<ByteStream>;

// A listen address: "host:port", "[v6]:port", ":port" (all interfaces) or "unix:/path".
struct ListenAddress {
  bool is_unix = false;
  std::string host;  // empty with ":port" means all interfaces
  uint16_t port = 0;
  std::string path;  // unix socket path
};

}  // namespace wsa::net
