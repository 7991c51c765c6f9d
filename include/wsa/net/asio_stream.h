#pragma once
// ByteStream over an Asio socket (TCP or unix). Include only from .cc files: it pulls in Asio.

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/write.hpp>

#include "wsa/net/address.h"
#include "wsa/net/stream.h"

namespace wsa::net {

template <typename Socket>
class AsioStream final : public ByteStream {
 public:
  explicit AsioStream(Socket socket) : socket_(std::move(socket)) {}
  void asyncReadSome(void* data, std::size_t size, IoHandler handler) override {
    socket_.async_read_some(asio::buffer(data, size), std::move(handler));
  }
  void asyncWrite(const void* data, std::size_t size, IoHandler handler) override {
    asio::async_write(socket_, asio::buffer(data, size), std::move(handler));
  }
  void shutdownWrite() override {
    std::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_send, ec);
  }
  void close() override {
    std::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_both, ec);
    socket_.close(ec);
  }
  void abort() override {
    if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
      std::error_code ec;
      socket_.set_option(asio::socket_base::linger(true, 0), ec);  // close sends RST
      socket_.close(ec);
    } else {
      close();
    }
  }
  std::string remoteAddress() const override {
    if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
      std::error_code ec;
      auto ep = socket_.remote_endpoint(ec);
      if (ec) return "";
      return joinHostPort(ep.address().to_string(), ep.port());
    } else {
      return "unix";
    }
  }
  Socket& socket() { return socket_; }

 private:
  Socket socket_;
};

using TcpStream = AsioStream<asio::ip::tcp::socket>;
using UnixStream = AsioStream<asio::local::stream_protocol::socket>;

}  // namespace wsa::net
