#pragma once
// The device's UDP socket on the Asio loop: one IPv6 socket that also carries IPv4 (mapped
// addresses) where the host has IPv6, else an IPv4 socket. Receives in batches (recvmmsg) and
// sends in batches (sendmmsg, flushed once per loop turn); the send queue is bounded.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "wsa/common/result.h"
#include "wsa/wg/endpoint.h"

namespace asio {
class io_context;
}

namespace wsa::wg {

class UdpBind {
 public:
  using OnDatagram = std::function<void(const Endpoint& from, std::span<uint8_t> datagram)>;
  struct Stats {
    uint64_t rx_datagrams = 0, rx_batches = 0, rx_truncated = 0;
    uint64_t tx_datagrams = 0, tx_batches = 0, tx_dropped = 0, tx_errors = 0;
  };
  static constexpr size_t kBatch = 32;
  static constexpr size_t kMaxDatagram = 65535;
  static constexpr size_t kMaxQueued = 1024;

  // Binds port (0: any) on all addresses, or on `address` when given.
  static Result<std::unique_ptr<UdpBind>> open(asio::io_context& io, uint16_t port,
                                               OnDatagram on_datagram,
                                               const std::string& address = "");
  ~UdpBind();
  uint16_t port() const { return port_; }
  // Queues a datagram (copied); sent at the end of this loop turn.
  void send(const Endpoint& to, std::span<const uint8_t> datagram);
  const Stats& stats() const { return stats_; }
  size_t queued() const;

  class Impl;

 private:
  explicit UdpBind(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
  Stats& stats_;
};

}  // namespace wsa::wg
