#include "wsa/control/url.h"

#include <charconv>

#include "wsa/net/address.h"

namespace wsa::control {

Result<ControlUrl> parseControlUrl(const std::string& url) {
  ControlUrl u;
  auto bad = [&](const std::string& why) {
    return makeError("control URL \"" + url + "\": " + why +
                     " (want http://host:port, https://host:port or unix:/path)");
  };
  if (url.rfind("unix:", 0) == 0) {
    u.scheme = ControlUrl::Scheme::kUnix;
    u.path = url.substr(5);
    if (u.path.rfind("//", 0) == 0) u.path = u.path.substr(2);
    if (u.path.empty() || u.path.front() != '/') return bad("unix socket path must be absolute");
    u.grpc_target = "unix:" + u.path;
    u.text = u.grpc_target;
    return u;
  }
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    u.scheme = ControlUrl::Scheme::kHttp;
    rest = url.substr(7);
    u.port = 80;
  } else if (url.rfind("https://", 0) == 0) {
    u.scheme = ControlUrl::Scheme::kHttps;
    rest = url.substr(8);
    u.port = 443;
  } else {
    return bad("unknown scheme");
  }
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    if (rest.substr(slash) != "/") return bad("paths are not supported");
    rest = rest.substr(0, slash);
  }
  if (rest.find('@') != std::string::npos)
    return bad("credentials in the URL are not supported; use --token-file");
  std::string host = rest;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return bad("unbalanced brackets");
    host = rest.substr(1, close - 1);
    std::string tail = rest.substr(close + 1);
    if (!tail.empty()) {
      if (tail.front() != ':') return bad("junk after the host");
      rest = tail;
    } else {
      rest.clear();
    }
    if (!rest.empty()) {
      std::string p = rest.substr(1);
      unsigned v = 0;
      auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
      if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) {
        return bad("port must be 1-65535");
      }
      u.port = static_cast<uint16_t>(v);
    }
  } else if (size_t colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    std::string p = rest.substr(colon + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) {
      return bad("port must be 1-65535");
    }
    u.port = static_cast<uint16_t>(v);
  }
  if (host.empty()) return bad("missing host");
  u.host = host;
  u.grpc_target = net::joinHostPort(host, u.port);
  u.text = (u.scheme == ControlUrl::Scheme::kHttps ? "https://" : "http://") + u.grpc_target;
  return u;
}

}  // namespace wsa::control
