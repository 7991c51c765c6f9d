#pragma once
// Stand-in endpoints for peers reached through the relay.
//
// The engine only knows UDP endpoints. A peer reached through the control server's relay gets a
// stand-in, 127.3.3.40:N with one port N per peer key: datagrams the engine sends there go to
// the relay stream (addressed by the peer's key) instead of the UDP socket, and datagrams the
// relay delivers are handed to the engine as coming from the sender's stand-in, so WireGuard's
// roaming (a peer's endpoint follows its last authenticated packet) sends the replies back the
// same way. `wg show` displays the stand-in.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "wsa/wg/crypto.h"
#include "wsa/wg/endpoint.h"

namespace wsa::wg {

class RelayEndpoints {
 public:
  // Bound on keys with a stand-in. When all are taken, the least recently used one is given to
  // the new key (packets for the old key, if it is still in use, then fail to decrypt at the
  // new owner and are dropped there).
  static constexpr size_t kDefaultMaxPeers = 4096;

  explicit RelayEndpoints(size_t max_peers = kDefaultMaxPeers);

  static bool isRelay(const Endpoint& e);
  // The stand-in for `key`, allocated on first use.
  Endpoint endpointFor(const PublicKey& key);
  // The key behind a stand-in, if it has one.
  std::optional<PublicKey> keyFor(const Endpoint& e);
  size_t size() const { return by_key_.size(); }
  uint64_t reassigned() const { return reassigned_; }

 private:
  struct Slot {
    PublicKey key{};
    uint64_t last_use = 0;
  };
  static Endpoint endpointOf(uint16_t port);
  size_t max_;
  uint64_t tick_ = 0;
  uint64_t reassigned_ = 0;
  std::vector<Slot> slots_;  // index = port - 1
  std::map<PublicKey, uint16_t> by_key_;
};

}  // namespace wsa::wg
