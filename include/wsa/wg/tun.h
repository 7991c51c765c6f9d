#pragma once
// A TUN interface as the device's packet interface: for processes allowed to create one (root,
// or CAP_NET_ADMIN in a network namespace). The kernel's TCP/IP stack then carries the
// traffic. Packets are read in bursts on the Asio loop; writes never block (a full queue drops
// the packet, as a NIC would).

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "wsa/common/result.h"

namespace asio {
class io_context;
}

namespace wsa::wg {

class Tun {
 public:
  using OnPacket = std::function<void(std::span<const uint8_t> ip_packet)>;
  using OnError = std::function<void(const std::string& error)>;
  struct Stats {
    uint64_t rx_packets = 0, tx_packets = 0, tx_dropped = 0;
  };
  // Creates (or attaches to) the interface `name`, sets its MTU and brings it up.
  static Result<std::unique_ptr<Tun>> open(asio::io_context& io, const std::string& name, int mtu,
                                           OnPacket on_packet, OnError on_error = {});
  ~Tun();
  const std::string& name() const { return name_; }
  void write(std::span<const uint8_t> ip_packet);
  const Stats& stats() const { return stats_; }

  class Impl;

 private:
  Tun() = default;
  std::unique_ptr<Impl> impl_;
  std::string name_;
  Stats stats_;
};

}  // namespace wsa::wg
