#include "controld/relay_router.h"

#include "wsa/common/metrics.h"

namespace wsa::controld {

RelaySink* RelayRouter::bind(RelaySink* sink, const std::string& key, std::string owner) {
  auto mine = bindings_.find(sink);
  if (mine != bindings_.end() && mine->second.key != key) {
    auto k = by_key_.find(mine->second.key);
    if (k != by_key_.end() && k->second == sink) by_key_.erase(k);
  }
  RelaySink* replaced = nullptr;
  auto existing = by_key_.find(key);
  if (existing != by_key_.end() && existing->second != sink) {
    replaced = existing->second;
    bindings_.erase(replaced);
  }
  by_key_[key] = sink;
  bindings_[sink] = Binding{key, std::move(owner)};
  return replaced;
}

bool RelayRouter::unbind(RelaySink* sink) {
  auto it = bindings_.find(sink);
  if (it == bindings_.end()) return false;
  auto k = by_key_.find(it->second.key);
  if (k != by_key_.end() && k->second == sink) by_key_.erase(k);
  bindings_.erase(it);
  return true;
}

RelaySink* RelayRouter::unbindKey(const std::string& key) {
  auto k = by_key_.find(key);
  if (k == by_key_.end()) return nullptr;
  RelaySink* sink = k->second;
  by_key_.erase(k);
  bindings_.erase(sink);
  return sink;
}

const RelayRouter::Binding* RelayRouter::binding(RelaySink* sink) const {
  auto it = bindings_.find(sink);
  return it == bindings_.end() ? nullptr : &it->second;
}

RelaySink* RelayRouter::sinkFor(const std::string& key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second;
}

void RelayRouter::collect(metrics::Families& out) const {
  out.counters("wsa_controld_relay_packets_total", "Relay packets by outcome")
      .add(counters_.relay_forwarded, {{"result", "forwarded"}})
      .add(counters_.relay_no_route, {{"result", "no_route"}})
      .add(counters_.relay_denied, {{"result", "denied"}})
      .add(counters_.relay_queue_full, {{"result", "queue_full"}});
}

}  // namespace wsa::controld
