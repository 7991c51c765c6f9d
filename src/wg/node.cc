#include "wsa/wg/node.h"

#include <cstring>

#include "wsa/overlay/v1/node.pb.h"

namespace wsa::wg {

Result<PeerConfig> peerFromNode(const overlay::v1::Node& n) {
  if (n.key().size() != 32) {
    return makeError("a WireGuard key of " + std::to_string(n.key().size()) + " bytes");
  }
  PeerConfig pc;
  std::memcpy(pc.public_key.data(), n.key().data(), 32);
  std::vector<Prefix> allowed;
  const auto& list = n.allowed_ips().empty() ? n.addresses() : n.allowed_ips();
  for (const auto& a : list) {
    if (auto p = parsePrefix(a)) allowed.push_back(*p);
  }
  pc.allowed_ips = allowed;
  for (const auto& e : n.endpoints()) {
    if (auto ep = parseEndpoint(e)) {
      pc.endpoint = *ep;
      break;
    }
  }
  return pc;
}

void describeNode(const PublicKey& key, const std::vector<std::string>& cidrs,
                  const std::vector<std::string>& endpoints, overlay::v1::Node* node) {
  node->set_key(std::string(reinterpret_cast<const char*>(key.data()), key.size()));
  for (const auto& a : cidrs) {
    node->add_addresses(a);
    node->add_allowed_ips(a);
  }
  for (const auto& e : endpoints) node->add_endpoints(e);
}

}  // namespace wsa::wg
