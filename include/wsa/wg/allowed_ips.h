#pragma once
// Cryptokey routing: prefixes (IPv4 and IPv6) → peer, longest prefix wins. A binary trie per
// family; lookups walk at most 32 or 128 bits.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "wsa/common/result.h"

namespace wsa::wg {

struct Prefix {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // IPv4 in the first 4 bytes
  uint8_t bits = 0;
  std::string toString() const;
  bool operator==(const Prefix& o) const;
};

// "100.64.0.1/32", "fd7a:115c:a1e0::/48"; a missing length means a single address. Host bits
// beyond the length are cleared (as wg does).
Result<Prefix> parsePrefix(std::string_view text);

class Peer;

class AllowedIps {
 public:
  AllowedIps();
  ~AllowedIps();
  // Inserts (or moves to `peer`) the prefix.
  void insert(const Prefix& p, Peer* peer);
  void removePeer(const Peer* peer);
  // The peer for a destination (4 or 16 bytes), or null.
  Peer* lookup(const uint8_t* addr, bool v6) const;
  std::vector<Prefix> prefixesOf(const Peer* peer) const;
  // Every (prefix, peer) pair, in one walk of the tries.
  void forEach(const std::function<void(const Prefix&, const Peer*)>& visit) const;
  size_t size() const { return count_; }

 private:
  struct Node;
  std::unique_ptr<Node> v4_, v6_;
  size_t count_ = 0;
};

}  // namespace wsa::wg
