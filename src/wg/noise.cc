#include "wg/noise.h"

#include <cstring>
#include <string_view>

namespace wsa::wg {

namespace {

constexpr std::string_view kConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
constexpr std::string_view kIdentifier = "WireGuard v1 zx2c4 Jason@zx2c4.com";
constexpr std::string_view kLabelMac1 = "mac1----";
constexpr std::string_view kLabelCookie = "cookie--";

std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::span<const uint8_t> bytesOf(const Bytes32& b) {
  return {b.data(), b.size()};
}
std::span<const uint8_t> bytesOf(const Secret& s) {
  return {s.data(), kKeySize};
}

// C0 = HASH(CONSTRUCTION), H0 = HASH(C0 ‖ IDENTIFIER).
struct Initial {
  Bytes32 chaining_key;
  Bytes32 hash;
};
const Initial& initial() {
  static const Initial i = [] {
    Initial x;
    x.chaining_key = hash({bytesOf(kConstruction)});
    x.hash = hash({bytesOf(x.chaining_key), bytesOf(kIdentifier)});
    return x;
  }();
  return i;
}

void mixHash(Bytes32& h, std::span<const uint8_t> data) {
  h = hash({bytesOf(h), data});
}

// C = KDF1(C, input)
void mixKey(Secret& ck, std::span<const uint8_t> input) {
  kdf(ck.data(), input, &ck);
}

// A fresh ephemeral key pair for our side of the handshake: its public half is written to the
// message at `out` and mixed into the chaining key and the hash (both message kinds do this).
void newEphemeral(Handshake& hs, uint8_t* out) {
  hs.ephemeral_private = generatePrivateKey();
  PublicKey e = publicKeyOf(hs.ephemeral_private);
  std::memcpy(out, e.data(), kKeySize);
  mixKey(hs.chaining_key, bytesOf(e));
  mixHash(hs.hash, bytesOf(e));
}

}  // namespace

Tai64n tai64n(int64_t unix_nanos) {
  constexpr uint64_t kBase = 0x400000000000000aULL;  // TAI64 label of 1970 (with the 10 s offset)
  uint64_t secs = kBase + static_cast<uint64_t>(unix_nanos / 1000000000);
  auto nanos = static_cast<uint32_t>(unix_nanos % 1000000000);
  nanos &= ~((1u << 24) - 1);
  Tai64n t;
  for (int i = 0; i < 8; ++i)
    t[static_cast<size_t>(i)] = static_cast<uint8_t>(secs >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i)
    t[static_cast<size_t>(8 + i)] = static_cast<uint8_t>(nanos >> (24 - 8 * i));
  return t;
}

bool tai64nAfter(const Tai64n& a, const Tai64n& b) {
  return std::memcmp(a.data(), b.data(), a.size()) > 0;
}

Identity makeIdentity(const Secret& private_key) {
  Identity id;
  id.private_key = private_key;
  id.public_key = publicKeyOf(private_key);
  id.mac1_key = hash({bytesOf(kLabelMac1), bytesOf(id.public_key)});
  id.cookie_key = hash({bytesOf(kLabelCookie), bytesOf(id.public_key)});
  return id;
}

RemoteStatic makeRemoteStatic(const Identity& us, const PublicKey& them, const Secret& psk) {
  RemoteStatic r;
  r.public_key = them;
  r.preshared_key = psk;
  if (auto ss = dh(us.private_key, them)) r.static_static = *ss;
  r.mac1_key = hash({bytesOf(kLabelMac1), bytesOf(them)});
  r.cookie_key = hash({bytesOf(kLabelCookie), bytesOf(them)});
  return r;
}

void Handshake::zero() {
  state = State::kZeroed;
  wipe(hash.data(), hash.size());
  chaining_key = Secret();
  ephemeral_private = Secret();
  remote_ephemeral.fill(0);
  local_index = 0;
  remote_index = 0;
}

bool createInitiation(const Identity& us, const RemoteStatic& peer, Handshake& hs,
                      uint32_t local_index, const Tai64n& now, uint8_t* msg) {
  if (peer.static_static.isZero()) return false;
  hs.zero();
  hs.chaining_key = Secret(initial().chaining_key);
  hs.hash = initial().hash;
  mixHash(hs.hash, bytesOf(peer.public_key));

  writeType(msg, kMsgInitiation);
  writeLe32(msg + kInitiationSenderOffset, local_index);
  newEphemeral(hs, msg + kInitiationEphemeralOffset);

  auto es = dh(hs.ephemeral_private, peer.public_key);
  if (!es) return false;
  Secret key;
  kdf(hs.chaining_key.data(), bytesOf(*es), &hs.chaining_key, &key);
  aeadSeal(key.data(), 0, bytesOf(us.public_key), bytesOf(hs.hash), msg + kInitiationStaticOffset);
  mixHash(hs.hash, {msg + kInitiationStaticOffset, kKeySize + kAeadTagSize});

  kdf(hs.chaining_key.data(), bytesOf(peer.static_static), &hs.chaining_key, &key);
  aeadSeal(key.data(), 0, {now.data(), now.size()}, bytesOf(hs.hash),
           msg + kInitiationTimestampOffset);
  mixHash(hs.hash, {msg + kInitiationTimestampOffset, now.size() + kAeadTagSize});

  hs.local_index = local_index;
  hs.state = Handshake::State::kInitiationCreated;
  return true;
}

std::optional<ConsumedInitiation> consumeInitiation(
    const Identity& us, const uint8_t* msg,
    const std::function<const RemoteStatic*(const PublicKey&)>& find) {
  ConsumedInitiation c;
  c.chaining_key = Secret(initial().chaining_key);
  c.hash = initial().hash;
  mixHash(c.hash, bytesOf(us.public_key));
  std::memcpy(c.remote_ephemeral.data(), msg + kInitiationEphemeralOffset, kKeySize);
  mixKey(c.chaining_key, bytesOf(c.remote_ephemeral));
  mixHash(c.hash, bytesOf(c.remote_ephemeral));

  auto es = dh(us.private_key, c.remote_ephemeral);
  if (!es) return std::nullopt;
  Secret key;
  kdf(c.chaining_key.data(), bytesOf(*es), &c.chaining_key, &key);
  if (!aeadOpen(key.data(), 0, {msg + kInitiationStaticOffset, kKeySize + kAeadTagSize},
                bytesOf(c.hash), c.initiator.data())) {
    return std::nullopt;
  }
  mixHash(c.hash, {msg + kInitiationStaticOffset, kKeySize + kAeadTagSize});

  const RemoteStatic* peer = find(c.initiator);
  if (peer == nullptr || peer->static_static.isZero()) return std::nullopt;
  kdf(c.chaining_key.data(), bytesOf(peer->static_static), &c.chaining_key, &key);
  if (!aeadOpen(key.data(), 0,
                {msg + kInitiationTimestampOffset, c.timestamp.size() + kAeadTagSize},
                bytesOf(c.hash), c.timestamp.data())) {
    return std::nullopt;
  }
  mixHash(c.hash, {msg + kInitiationTimestampOffset, c.timestamp.size() + kAeadTagSize});
  c.sender_index = readLe32(msg + kInitiationSenderOffset);
  return c;
}

void acceptInitiation(Handshake& hs, ConsumedInitiation&& c) {
  hs.zero();
  hs.hash = c.hash;
  hs.chaining_key = c.chaining_key;
  hs.remote_ephemeral = c.remote_ephemeral;
  hs.remote_index = c.sender_index;
  hs.state = Handshake::State::kInitiationConsumed;
  wipe(c.hash.data(), c.hash.size());
}

bool createResponse(const RemoteStatic& peer, Handshake& hs, uint32_t local_index, uint8_t* msg) {
  if (hs.state != Handshake::State::kInitiationConsumed) return false;
  writeType(msg, kMsgResponse);
  writeLe32(msg + kResponseSenderOffset, local_index);
  writeLe32(msg + kResponseReceiverOffset, hs.remote_index);

  newEphemeral(hs, msg + kResponseEphemeralOffset);

  auto ee = dh(hs.ephemeral_private, hs.remote_ephemeral);
  auto se = dh(hs.ephemeral_private, peer.public_key);
  if (!ee || !se) return false;
  mixKey(hs.chaining_key, bytesOf(*ee));
  mixKey(hs.chaining_key, bytesOf(*se));

  Secret tau, key;
  kdf(hs.chaining_key.data(), bytesOf(peer.preshared_key), &hs.chaining_key, &tau, &key);
  mixHash(hs.hash, bytesOf(tau));
  aeadSeal(key.data(), 0, {}, bytesOf(hs.hash), msg + kResponseEmptyOffset);
  mixHash(hs.hash, {msg + kResponseEmptyOffset, kAeadTagSize});

  hs.local_index = local_index;
  hs.state = Handshake::State::kResponseCreated;
  return true;
}

bool consumeResponse(const Identity& us, const RemoteStatic& peer, Handshake& hs,
                     const uint8_t* msg) {
  if (hs.state != Handshake::State::kInitiationCreated) return false;
  // Work on copies: a forged response must leave the pending handshake intact.
  Bytes32 h = hs.hash;
  Secret ck = hs.chaining_key;
  PublicKey e;
  std::memcpy(e.data(), msg + kResponseEphemeralOffset, kKeySize);
  mixKey(ck, bytesOf(e));
  mixHash(h, bytesOf(e));
  auto ee = dh(hs.ephemeral_private, e);
  auto se = dh(us.private_key, e);
  if (!ee || !se) return false;
  mixKey(ck, bytesOf(*ee));
  mixKey(ck, bytesOf(*se));
  Secret tau, key;
  kdf(ck.data(), bytesOf(peer.preshared_key), &ck, &tau, &key);
  mixHash(h, bytesOf(tau));
  uint8_t nothing[1];
  if (!aeadOpen(key.data(), 0, {msg + kResponseEmptyOffset, kAeadTagSize}, bytesOf(h), nothing)) {
    return false;
  }
  mixHash(h, {msg + kResponseEmptyOffset, kAeadTagSize});
  hs.hash = h;
  hs.chaining_key = ck;
  hs.remote_ephemeral = e;
  hs.remote_index = readLe32(msg + kResponseSenderOffset);
  hs.state = Handshake::State::kResponseConsumed;
  wipe(h.data(), h.size());
  return true;
}

void deriveTransportKeys(Handshake& hs, bool initiator, Secret* send, Secret* receive) {
  Secret first, second;
  kdf(hs.chaining_key.data(), {}, &first, &second);
  *send = initiator ? first : second;
  *receive = initiator ? second : first;
  uint32_t keep_local = hs.local_index, keep_remote = hs.remote_index;
  hs.zero();
  hs.local_index = keep_local;
  hs.remote_index = keep_remote;
}

}  // namespace wsa::wg
