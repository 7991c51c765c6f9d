#pragma once
// WireGuard's Noise_IKpsk2 handshake (whitepaper §5.4): building and opening the initiation and
// response messages, and deriving the transport keys. Pure functions over explicit state; the
// MACs, cookies, indices, timers and I/O belong to the device (device.h).

#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "wg/messages.h"
#include "wsa/wg/crypto.h"

namespace wsa::wg {

using Tai64n = std::array<uint8_t, 12>;

// TAI64N of a wall-clock time in nanoseconds since the Unix epoch, with the sub-second part
// rounded down to 2^24 ns so that the timestamp does not reveal the clock's precision.
Tai64n tai64n(int64_t unix_nanos);
// a > b, as timestamps (big-endian byte order makes this a plain comparison).
bool tai64nAfter(const Tai64n& a, const Tai64n& b);

struct Identity {
  Secret private_key;
  PublicKey public_key{};
  Bytes32 mac1_key{};    // HASH(LABEL_MAC1 ‖ our public key): checks mac1 of what we receive
  Bytes32 cookie_key{};  // HASH(LABEL_COOKIE ‖ our public key): seals the cookies we send
};
Identity makeIdentity(const Secret& private_key);

// What we know of a peer's static identity, precomputed once.
struct RemoteStatic {
  PublicKey public_key{};
  Secret preshared_key;
  Secret static_static;  // DH(our private, their public); zero if that DH is invalid
  Bytes32 mac1_key{};    // HASH(LABEL_MAC1 ‖ their public key): mac1 of what we send them
  Bytes32 cookie_key{};  // HASH(LABEL_COOKIE ‖ their public key): opens their cookie replies
};
RemoteStatic makeRemoteStatic(const Identity& us, const PublicKey& them, const Secret& psk);

struct Handshake {
  enum class State {
    kZeroed,
    kInitiationCreated,   // initiator: waiting for the response
    kInitiationConsumed,  // responder: about to answer
    kResponseCreated,     // responder: answered; keys can be derived
    kResponseConsumed,    // initiator: complete; keys can be derived
  };
  State state = State::kZeroed;
  Bytes32 hash{};
  Secret chaining_key;
  Secret ephemeral_private;
  PublicKey remote_ephemeral{};
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  // Zeroes the secrets and forgets the state.
  void zero();
};

// Writes an initiation (without mac1/mac2) into msg[0..kInitiationMacOffset).
bool createInitiation(const Identity& us, const RemoteStatic& peer, Handshake& hs,
                      uint32_t local_index, const Tai64n& now, uint8_t* msg);

struct ConsumedInitiation {
  PublicKey initiator{};
  uint32_t sender_index = 0;
  Tai64n timestamp{};
  Bytes32 hash{};
  Secret chaining_key;
  PublicKey remote_ephemeral{};
};
// Opens an initiation addressed to `us` (macs already checked). `find` maps the decrypted static
// key to the peer (null: unknown peer). The caller checks the timestamp's freshness and then
// stores the result into the peer's handshake (acceptInitiation).
std::optional<ConsumedInitiation> consumeInitiation(
    const Identity& us, const uint8_t* msg,
    const std::function<const RemoteStatic*(const PublicKey&)>& find);
void acceptInitiation(Handshake& hs, ConsumedInitiation&& c);

// Writes a response (without mac1/mac2) to the initiation held in `hs`.
bool createResponse(const RemoteStatic& peer, Handshake& hs, uint32_t local_index, uint8_t* msg);

// Opens a response to our initiation held in `hs` (macs checked, index matched by the caller).
bool consumeResponse(const Identity& us, const RemoteStatic& peer, Handshake& hs,
                     const uint8_t* msg);

// The transport keys once the handshake is complete; zeroes the handshake.
void deriveTransportKeys(Handshake& hs, bool initiator, Secret* send, Secret* receive);

}  // namespace wsa::wg
