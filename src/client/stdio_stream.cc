#include "client/stdio_stream.h"

#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>

namespace wsa::client {

namespace {

class StdioStream final : public net::ByteStream {
 public:
  explicit StdioStream(asio::io_context& io) : in_(io, ::dup(0)), out_(io, ::dup(1)) {}
  void asyncReadSome(void* data, std::size_t size, IoHandler handler) override {
    in_.async_read_some(asio::buffer(data, size), std::move(handler));
  }
  void asyncWrite(const void* data, std::size_t size, IoHandler handler) override {
    asio::async_write(out_, asio::buffer(data, size), std::move(handler));
  }
  void shutdownWrite() override {
    std::error_code ec;
    out_.close(ec);
  }
  void close() override {
    std::error_code ec;
    in_.close(ec);
    out_.close(ec);
  }
  std::string remoteAddress() const override { return "stdio"; }

 private:
  asio::posix::stream_descriptor in_, out_;
};

}  // namespace

net::ByteStreamPtr makeStdioStream(asio::io_context& io) {
  return std::make_unique<StdioStream>(io);
}

}  // namespace wsa::client
