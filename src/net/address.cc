#include "wsa/net/address.h"

#include <charconv>

namespace wsa::net {

std::string joinHostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<ListenAddress> parseListenAddress(const std::string& text) {
  ListenAddress a;
  if (text.rfind("unix:", 0) == 0) {
    a.is_unix = true;
    a.path = text.substr(5);
    if (a.path.rfind("//", 0) == 0) a.path = a.path.substr(2);  // unix:///path form
    if (a.path.empty()) return makeError("address \"" + text + "\": empty unix socket path");
    if (a.path.size() >= 108) {
      return makeError("address \"" + text + "\": unix socket path longer than 107 bytes");
    }
    return a;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return makeError("address \"" + text + "\": want host:port, [ipv6]:port or unix:/path");
  }
  std::string host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.back() != ']') return makeError("address \"" + text + "\": unbalanced brackets");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return makeError("address \"" + text + "\": put IPv6 hosts in brackets, as [::1]:8080");
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return makeError("address \"" + text + "\": port must be a number from 0 to 65535");
  }
  a.host = host;
  a.port = static_cast<uint16_t>(value);
  return a;
}

}  // namespace wsa::net
