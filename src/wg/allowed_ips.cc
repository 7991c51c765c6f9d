#include "wsa/wg/allowed_ips.h"

#include <arpa/inet.h>

#include <cstring>

namespace wsa::wg {

struct AllowedIps::Node {
  std::unique_ptr<Node> child[2];
  Peer* peer = nullptr;  // set when a prefix ends here
};

namespace {

bool bitAt(const uint8_t* addr, int i) {
  return (addr[i / 8] >> (7 - i % 8)) & 1;
}

}  // namespace

std::string Prefix::toString() const {
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof(buf));
  return std::string(buf) + "/" + std::to_string(bits);
}

bool Prefix::operator==(const Prefix& o) const {
  return v6 == o.v6 && bits == o.bits && addr == o.addr;
}

Result<Prefix> parsePrefix(std::string_view text) {
  std::string s(text);
  std::string addr = s;
  int bits = -1;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    addr = s.substr(0, slash);
    std::string len = s.substr(slash + 1);
    if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string::npos) {
      return makeError("\"" + s + "\": the prefix length is not a number");
    }
    bits = std::stoi(len);
  }
  Prefix p;
  if (::inet_pton(AF_INET, addr.c_str(), p.addr.data()) == 1) {
    p.v6 = false;
    if (bits < 0) bits = 32;
    if (bits > 32) return makeError("\"" + s + "\": an IPv4 prefix is at most /32");
  } else if (::inet_pton(AF_INET6, addr.c_str(), p.addr.data()) == 1) {
    p.v6 = true;
    if (bits < 0) bits = 128;
    if (bits > 128) return makeError("\"" + s + "\": an IPv6 prefix is at most /128");
  } else {
    return makeError("\"" + s + "\" is not an IP address or prefix");
  }
  p.bits = static_cast<uint8_t>(bits);
  // Clear host bits.
  int total = p.v6 ? 128 : 32;
  for (int i = bits; i < total; ++i) p.addr[i / 8] &= static_cast<uint8_t>(~(1u << (7 - i % 8)));
  return p;
}

AllowedIps::AllowedIps() : v4_(std::make_unique<Node>()), v6_(std::make_unique<Node>()) {}
AllowedIps::~AllowedIps() = default;

void AllowedIps::insert(const Prefix& p, Peer* peer) {
  Node* n = p.v6 ? v6_.get() : v4_.get();
  for (int i = 0; i < p.bits; ++i) {
    int b = bitAt(p.addr.data(), i);
    if (!n->child[b]) n->child[b] = std::make_unique<Node>();
    n = n->child[b].get();
  }
  if (n->peer == nullptr) ++count_;
  n->peer = peer;
}

void AllowedIps::removePeer(const Peer* peer) {
  // Clears the peer's entries and prunes empty branches.
  std::function<bool(Node*)> walk = [&](Node* n) -> bool {
    if (n->peer == peer) {
      n->peer = nullptr;
      --count_;
    }
    for (auto& c : n->child) {
      if (c && walk(c.get())) c.reset();
    }
    return n->peer == nullptr && !n->child[0] && !n->child[1];
  };
  walk(v4_.get());
  walk(v6_.get());
}

Peer* AllowedIps::lookup(const uint8_t* addr, bool v6) const {
  const Node* n = v6 ? v6_.get() : v4_.get();
  Peer* best = n->peer;
  int total = v6 ? 128 : 32;
  for (int i = 0; i < total && n != nullptr; ++i) {
    n = n->child[bitAt(addr, i)].get();
    if (n != nullptr && n->peer != nullptr) best = n->peer;
  }
  return best;
}

std::vector<Prefix> AllowedIps::prefixesOf(const Peer* peer) const {
  std::vector<Prefix> out;
  forEach([&](const Prefix& p, const Peer* owner) {
    if (owner == peer) out.push_back(p);
  });
  return out;
}

void AllowedIps::forEach(const std::function<void(const Prefix&, const Peer*)>& visit) const {
  std::function<void(const Node*, Prefix&, int)> walk = [&](const Node* n, Prefix& cur, int depth) {
    if (n->peer != nullptr) {
      Prefix p = cur;
      p.bits = static_cast<uint8_t>(depth);
      visit(p, n->peer);
    }
    for (int b = 0; b < 2; ++b) {
      if (!n->child[b]) continue;
      if (b) cur.addr[depth / 8] |= static_cast<uint8_t>(1u << (7 - depth % 8));
      walk(n->child[b].get(), cur, depth + 1);
      if (b) cur.addr[depth / 8] &= static_cast<uint8_t>(~(1u << (7 - depth % 8)));
    }
  };
  Prefix p4;
  walk(v4_.get(), p4, 0);
  Prefix p6;
  p6.v6 = true;
  walk(v6_.get(), p6, 0);
}

}  // namespace wsa::wg
