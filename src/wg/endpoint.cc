#include "wsa/wg/endpoint.h"

#include <arpa/inet.h>

#include <cstring>

namespace wsa::wg {

std::string Endpoint::toString() const {
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof(buf));
  return v6 ? "[" + std::string(buf) + "]:" + std::to_string(port)
            : std::string(buf) + ":" + std::to_string(port);
}

socklen_t Endpoint::toSockaddr(sockaddr_storage* ss) const {
  std::memset(ss, 0, sizeof(*ss));
  if (v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, addr.data(), 16);
    return sizeof(sockaddr_in6);
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(port);
  std::memcpy(&s4->sin_addr, addr.data(), 4);
  return sizeof(sockaddr_in);
}

Endpoint Endpoint::fromSockaddr(const sockaddr* sa) {
  Endpoint e;
  if (sa->sa_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
    e.port = ntohs(s6->sin6_port);
    const uint8_t* a = reinterpret_cast<const uint8_t*>(&s6->sin6_addr);
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a, kMapped, 12) == 0) {
      std::memcpy(e.addr.data(), a + 12, 4);
    } else {
      e.v6 = true;
      std::memcpy(e.addr.data(), a, 16);
    }
  } else if (sa->sa_family == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
    e.port = ntohs(s4->sin_port);
    std::memcpy(e.addr.data(), &s4->sin_addr, 4);
  }
  return e;
}

Result<Endpoint> parseEndpoint(std::string_view text) {
  std::string s(text);
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return makeError("endpoint \"" + s + "\": want host:port");
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) == 0 ||
      std::stoi(port) > 65535) {
    return makeError("endpoint \"" + s + "\": bad port");
  }
  Endpoint e;
  e.port = static_cast<uint16_t>(std::stoi(port));
  if (::inet_pton(AF_INET, host.c_str(), e.addr.data()) == 1) return e;
  if (::inet_pton(AF_INET6, host.c_str(), e.addr.data()) == 1) {
    e.v6 = true;
    return e;
  }
  return makeError("endpoint \"" + s + "\": \"" + host + "\" is not an IP address");
}

}  // namespace wsa::wg
