#include "wsa/wg/relay_endpoints.h"

#include <algorithm>

namespace wsa::wg {

namespace {
constexpr uint8_t kRelayAddr[4] = {127, 3, 3, 40};
}

RelayEndpoints::RelayEndpoints(size_t max_peers) : max_(std::clamp<size_t>(max_peers, 1, 65535)) {}

bool RelayEndpoints::isRelay(const Endpoint& e) {
  return !e.v6 && e.port != 0 && std::equal(kRelayAddr, kRelayAddr + 4, e.addr.begin());
}

Endpoint RelayEndpoints::endpointOf(uint16_t port) {
  Endpoint e;
  std::copy(kRelayAddr, kRelayAddr + 4, e.addr.begin());
  e.port = port;
  return e;
}

Endpoint RelayEndpoints::endpointFor(const PublicKey& key) {
  ++tick_;
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    slots_[it->second - 1].last_use = tick_;
    return endpointOf(it->second);
  }
  size_t index;
  if (slots_.size() < max_) {
    index = slots_.size();
    slots_.emplace_back();
  } else {
    auto lru = std::min_element(slots_.begin(), slots_.end(), [](const Slot& a, const Slot& b) {
      return a.last_use < b.last_use;
    });
    index = static_cast<size_t>(lru - slots_.begin());
    by_key_.erase(lru->key);
    ++reassigned_;
  }
  auto port = static_cast<uint16_t>(index + 1);
  slots_[index] = Slot{key, tick_};
  by_key_[key] = port;
  return endpointOf(port);
}

std::optional<PublicKey> RelayEndpoints::keyFor(const Endpoint& e) {
  if (!isRelay(e) || e.port > slots_.size()) return std::nullopt;
  Slot& s = slots_[e.port - 1];  // every slot below size() holds a key
  s.last_use = ++tick_;
  return s.key;
}

}  // namespace wsa::wg
