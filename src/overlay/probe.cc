#include "overlay/probe.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace wsa::overlay::probe {

namespace {

constexpr std::string_view kLabel = "wsa probe v1";
constexpr size_t kPlainHead = 2 + kTxIdSize;

void putEndpoint(std::vector<uint8_t>& out, const wg::Endpoint& e) {
  out.push_back(e.v6 ? 6 : 4);
  out.insert(out.end(), e.addr.begin(), e.addr.begin() + (e.v6 ? 16 : 4));
  out.push_back(static_cast<uint8_t>(e.port >> 8));
  out.push_back(static_cast<uint8_t>(e.port & 0xff));
}

// Reads one address at `pos`; false when malformed.
bool getEndpoint(std::span<const uint8_t> in, size_t& pos, wg::Endpoint* e) {
  if (pos >= in.size()) return false;
  uint8_t family = in[pos++];
  size_t n = family == 4 ? 4 : family == 6 ? 16 : 0;
  if (n == 0 || pos + n + 2 > in.size()) return false;
  *e = wg::Endpoint{};
  e->v6 = family == 6;
  std::memcpy(e->addr.data(), in.data() + pos, n);
  pos += n;
  e->port = static_cast<uint16_t>(in[pos] << 8 | in[pos + 1]);
  pos += 2;
  return e->valid();
}

}  // namespace

bool isProbe(std::span<const uint8_t> d) {
  return d.size() >= kMagic.size() && std::equal(kMagic.begin(), kMagic.end(), d.begin());
}

std::optional<wg::PublicKey> senderOf(std::span<const uint8_t> d) {
  if (!isProbe(d) || d.size() < kHeaderSize + kPlainHead + wg::kAeadTagSize) return std::nullopt;
  wg::PublicKey k;
  std::memcpy(k.data(), d.data() + kMagic.size(), k.size());
  return k;
}

std::optional<wg::Secret> sharedKey(const wg::Secret& our_private,
                                    const wg::PublicKey& their_public) {
  auto shared = wg::dh(our_private, their_public);
  if (!shared) return std::nullopt;
  auto label = std::span(reinterpret_cast<const uint8_t*>(kLabel.data()), kLabel.size());
  wg::Secret key(wg::hash({label, shared->bytes()}));
  return key;
}

std::vector<uint8_t> seal(const wg::PublicKey& sender, const wg::Secret& key, const Message& m) {
  std::vector<uint8_t> plain;
  plain.push_back(static_cast<uint8_t>(m.type));
  plain.push_back(kVersion);
  plain.insert(plain.end(), m.txid.begin(), m.txid.end());
  if (m.type == Type::kPong) putEndpoint(plain, m.observed);
  if (m.type == Type::kCallMeMaybe) {
    size_t n = std::min(m.endpoints.size(), kMaxCallMeMaybe);
    plain.push_back(static_cast<uint8_t>(n));
    for (size_t i = 0; i < n; ++i) putEndpoint(plain, m.endpoints[i]);
  }
  std::vector<uint8_t> out(kHeaderSize + plain.size() + wg::kAeadTagSize);
  std::memcpy(out.data(), kMagic.data(), kMagic.size());
  std::memcpy(out.data() + kMagic.size(), sender.data(), sender.size());
  uint8_t* nonce = out.data() + kMagic.size() + sender.size();
  wg::randomBytes(nonce, wg::kXNonceSize);
  // The header (magic and sender) is authenticated as associated data.
  wg::xaeadSeal(key.data(), nonce, plain, std::span(out.data(), kMagic.size() + sender.size()),
                out.data() + kHeaderSize);
  return out;
}

std::optional<Message> open(std::span<const uint8_t> d, const wg::Secret& key) {
  if (!senderOf(d)) return std::nullopt;
  std::vector<uint8_t> plain(d.size() - kHeaderSize - wg::kAeadTagSize);
  const uint8_t* nonce = d.data() + kMagic.size() + 32;
  if (!wg::xaeadOpen(key.data(), nonce, d.subspan(kHeaderSize), d.first(kMagic.size() + 32),
                     plain.data())) {
    return std::nullopt;
  }
  if (plain.size() < kPlainHead || plain[1] != kVersion) return std::nullopt;
  Message m;
  if (plain[0] < 1 || plain[0] > 3) return std::nullopt;
  m.type = static_cast<Type>(plain[0]);
  std::memcpy(m.txid.data(), plain.data() + 2, kTxIdSize);
  size_t pos = kPlainHead;
  std::span<const uint8_t> p(plain);
  switch (m.type) {
    case Type::kPing:
      break;
    case Type::kPong:
      if (!getEndpoint(p, pos, &m.observed)) return std::nullopt;
      break;
    case Type::kCallMeMaybe: {
      if (pos >= p.size()) return std::nullopt;
      size_t n = p[pos++];
      if (n > kMaxCallMeMaybe) return std::nullopt;
      for (size_t i = 0; i < n; ++i) {
        wg::Endpoint e;
        if (!getEndpoint(p, pos, &e)) return std::nullopt;
        m.endpoints.push_back(e);
      }
      break;
    }
  }
  if (pos != p.size()) return std::nullopt;
  return m;
}

TxId newTxId() {
  TxId t;
  wg::randomBytes(t.data(), t.size());
  return t;
}

}  // namespace wsa::overlay::probe
