#pragma once
// Path probe messages ("disco" in Tailscale's terms): small datagrams on the WireGuard UDP socket
// (or through the relay) that find and check direct paths between two peers. docs/overlay.md
// has the format:
//
//   magic "WSA\xf0\x9f\x92" (6) | sender's WireGuard public key (32) | nonce (24) |
//   XChaCha20-Poly1305( type (1) | version (1) | transaction id (12) | body )
//
// sealed with a key both peers derive from their static X25519 keys:
//   HASH("wsa probe v1" || DH(our private, their public)),
// so only the holder of the sender's key can make a message that opens, and only the
// receiver can read it. The magic's first byte (0x57) is no WireGuard message type (1–4) and
// its top bits (01) rule out STUN (00), so the engine tells the three apart by the first bytes.
//
// Bodies: ping — empty; pong — the address the ping came from (family 4|6, address, port);
// call-me-maybe — a count and that many addresses (the sender's candidates, at most 16).

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "wsa/wg/crypto.h"
#include "wsa/wg/endpoint.h"

namespace wsa::overlay::probe {

constexpr std::array<uint8_t, 6> kMagic = {'W', 'S', 'A', 0xf0, 0x9f, 0x92};
constexpr size_t kHeaderSize = 6 + 32 + wg::kXNonceSize;
constexpr size_t kTxIdSize = 12;
constexpr size_t kMaxCallMeMaybe = 16;
constexpr uint8_t kVersion = 1;

enum class Type : uint8_t { kPing = 1, kPong = 2, kCallMeMaybe = 3 };
using TxId = std::array<uint8_t, kTxIdSize>;

struct Message {
  Type type = Type::kPing;
  TxId txid{};
  wg::Endpoint observed;                // pong: where the ping came from
  std::vector<wg::Endpoint> endpoints;  // call-me-maybe
};

// Whether a datagram starts with the probe magic (cheap; says nothing of its validity).
bool isProbe(std::span<const uint8_t> datagram);
// The sender's key of a datagram that isProbe() and is long enough; nullopt otherwise.
std::optional<wg::PublicKey> senderOf(std::span<const uint8_t> datagram);

// The key two peers share for their probe messages (symmetric: either side derives it).
// nullopt when the DH result is all zeros (a low-order point).
std::optional<wg::Secret> sharedKey(const wg::Secret& our_private,
                                    const wg::PublicKey& their_public);

// A sealed datagram from `sender` with `key`.
std::vector<uint8_t> seal(const wg::PublicKey& sender, const wg::Secret& key, const Message& m);
// Opens a datagram with `key` (the sender's, from senderOf). nullopt when it does not
// authenticate or is malformed (bad version, type, body).
std::optional<Message> open(std::span<const uint8_t> datagram, const wg::Secret& key);

TxId newTxId();

}  // namespace wsa::overlay::probe
