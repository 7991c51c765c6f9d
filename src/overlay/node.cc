#include "wsa/overlay/node.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <cstring>

#include "wsa/net/address.h"
#include "wsa/overlay/v1/node.pb.h"

namespace wsa::overlay {

Result<wg::PeerConfig> peerFromNode(const overlay::v1::Node& n) {
  if (n.key().size() != 32) {
    return makeError("a WireGuard key of " + std::to_string(n.key().size()) + " bytes");
  }
  wg::PeerConfig pc;
  std::memcpy(pc.public_key.data(), n.key().data(), 32);
  std::vector<wg::Prefix> allowed;
  const auto& list = n.allowed_ips().empty() ? n.addresses() : n.allowed_ips();
  for (const auto& a : list) {
    if (auto p = wg::parsePrefix(a)) allowed.push_back(*p);
  }
  pc.allowed_ips = allowed;
  for (const auto& e : n.endpoints()) {
    if (auto ep = wg::parseEndpoint(e)) {
      pc.endpoint = *ep;
      break;
    }
  }
  return pc;
}

std::vector<wg::Endpoint> candidatesOf(const overlay::v1::Node& n) {
  std::vector<wg::Endpoint> out;
  if (n.candidates_size() > 0) {
    for (const auto& c : n.candidates()) {
      if (auto e = wg::parseEndpoint(c.address())) out.push_back(*e);
    }
    return out;
  }
  for (const auto& t : n.endpoints()) {
    if (auto e = wg::parseEndpoint(t)) out.push_back(*e);
  }
  return out;
}

void describeNode(const wg::PublicKey& key, const std::vector<std::string>& cidrs,
                  const std::vector<std::string>& endpoints, overlay::v1::Node* node) {
  node->set_key(std::string(reinterpret_cast<const char*>(key.data()), key.size()));
  for (const auto& a : cidrs) {
    node->add_addresses(a);
    node->add_allowed_ips(a);
  }
  for (const auto& e : endpoints) node->add_endpoints(e);
}

namespace {

std::vector<std::string> interfaceEndpoints(uint16_t port) {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || (i->ifa_flags & IFF_LOOPBACK) != 0 ||
        (i->ifa_flags & IFF_UP) == 0) {
      continue;
    }
    char host[INET6_ADDRSTRLEN] = {0};
    if (i->ifa_addr->sa_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, host,
                  sizeof(host));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(a)) continue;
      ::inet_ntop(AF_INET6, a, host, sizeof(host));
    } else {
      continue;
    }
    out.push_back(net::joinHostPort(host, port));
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace

std::vector<std::string> publishedEndpoints(const std::vector<std::string>& configured,
                                            uint16_t port) {
  if (configured.empty()) return interfaceEndpoints(port);
  std::vector<std::string> out;
  for (const auto& e : configured) {
    if (auto p = wg::parseEndpoint(e)) {
      out.push_back(e);
    } else {
      out.push_back(net::joinHostPort(e, port));
    }
  }
  return out;
}

}  // namespace wsa::overlay
