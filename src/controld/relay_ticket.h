#pragma once
// Relay tickets (docs/protocol.md, "Relay tickets"): the control server signs, for each
// coordinating peer, which keys it may reach through a relay and until when; relay-only nodes
// check the signature against the public keys they trust. Ed25519 (OpenSSL) over
// "wsa-relay-ticket-v1\0" || body.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/overlay/v1/relay.pb.h"

namespace wsa::controld {

// What the signature covers before the body (the NUL included).
inline constexpr std::string_view kRelayTicketContext{"wsa-relay-ticket-v1\0", 20};
// A ticket this long past its not_after is still accepted (clocks of different machines).
inline constexpr int64_t kRelayTicketSkewMs = 60'000;

class RelayTicketSigner {
 public:
  // Loads the Ed25519 private key (PEM, PKCS#8) at `path`, or creates one there (mode 0600)
  // when there is no file. A key file others may read is refused.
  static Result<std::unique_ptr<RelayTicketSigner>> loadOrCreate(const std::string& path);
  // A fresh key that lives in memory only (tests).
  static std::unique_ptr<RelayTicketSigner> generate();
  ~RelayTicketSigner();
  RelayTicketSigner(const RelayTicketSigner&) = delete;
  RelayTicketSigner& operator=(const RelayTicketSigner&) = delete;

  // The public key: 32 raw bytes, or standard base64 (44 characters) as --relay-trusted-key
  // takes it.
  std::string publicKey() const;
  std::string publicKeyBase64() const;
  // Serializes `body` and signs it. Thread-safe.
  overlay::v1::RelayTicket sign(const overlay::v1::RelayTicketBody& body) const;

 private:
  struct Key;
  explicit RelayTicketSigner(std::unique_ptr<Key> key);
  std::unique_ptr<Key> key_;
};

enum class TicketCheck { kAccepted, kMissing, kBadSignature, kExpired, kStale, kWrongKey };
// "accepted", "missing", "bad_signature", "expired", "stale", "wrong_key" (the metric's label).
const char* ticketCheckName(TicketCheck check);

class RelayTicketVerifier {
 public:
  // Public keys in standard base64 of 32 bytes; an error names the bad one by position.
  static Result<RelayTicketVerifier> fromBase64(const std::vector<std::string>& keys);
  // Raw 32-byte public keys (tests); keys of another length are skipped.
  explicit RelayTicketVerifier(const std::vector<std::string>& raw_keys);
  RelayTicketVerifier(RelayTicketVerifier&&) noexcept;
  RelayTicketVerifier& operator=(RelayTicketVerifier&&) noexcept;
  ~RelayTicketVerifier();
  size_t keyCount() const;

  // kBadSignature unless a trusted key signed the ticket and its body parses; then kWrongKey
  // unless the body is for `expected_key`, kExpired past not_after (plus the skew). The body is
  // written to `out` on kAccepted. Thread-safe. (kStale is the caller's: it knows the serials.)
  TicketCheck verify(const overlay::v1::RelayTicket& ticket, const std::string& expected_key,
                     int64_t now_unix_ms, overlay::v1::RelayTicketBody* out) const;

 private:
  struct Keys;
  std::unique_ptr<Keys> keys_;
};

// Standard base64 (with padding), as the key flags and --print-relay-key use it.
std::string base64Encode(std::string_view bytes);
Result<std::string> base64Decode(std::string_view text);

}  // namespace wsa::controld
