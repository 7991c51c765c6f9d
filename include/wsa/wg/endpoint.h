#pragma once
// A UDP endpoint (IPv4 or IPv6 address and port) as a small value type.

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "wsa/common/result.h"

namespace wsa::wg {

struct Endpoint {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // IPv4 in the first 4 bytes
  uint16_t port = 0;

  bool valid() const { return port != 0; }
  std::string toString() const;  // "198.18.0.1:51820", "[fd00::1]:51820"
  bool operator==(const Endpoint& o) const = default;
  // To and from sockaddr (IPv4-mapped IPv6 addresses become IPv4).
  socklen_t toSockaddr(sockaddr_storage* ss) const;
  static Endpoint fromSockaddr(const sockaddr* sa);
};

// "host:port" or "[v6]:port" with a literal address.
Result<Endpoint> parseEndpoint(std::string_view text);

}  // namespace wsa::wg
