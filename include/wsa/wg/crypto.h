#pragma once
// The primitives WireGuard is built from, all from OpenSSL 3 and libsodium (nothing hand-rolled):
//   HASH   BLAKE2s-256                     (OpenSSL EVP "BLAKE2S-256")
//   MAC    keyed BLAKE2s, 16-byte output   (OpenSSL EVP_MAC "BLAKE2SMAC")
//   HMAC   HMAC-BLAKE2s                    (OpenSSL EVP_MAC "HMAC")
//   DH     X25519                          (OpenSSL EVP_PKEY)
//   AEAD   ChaCha20-Poly1305 (RFC 8439)    (OpenSSL EVP, contexts reused per key)
//   XAEAD  XChaCha20-Poly1305              (libsodium; cookie replies)

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "wsa/common/result.h"

namespace wsa::wg {

constexpr size_t kKeySize = 32;
constexpr size_t kHashSize = 32;
constexpr size_t kMacSize = 16;
constexpr size_t kAeadTagSize = 16;
constexpr size_t kXNonceSize = 24;

using Bytes32 = std::array<uint8_t, 32>;
using Mac16 = std::array<uint8_t, 16>;

// Zeroes memory in a way the optimizer keeps.
void wipe(void* data, size_t size);

// 32 bytes that are zeroed when they go away (private keys, chaining keys, symmetric keys).
class Secret {
 public:
  Secret() { bytes_.fill(0); }
  explicit Secret(const Bytes32& b) : bytes_(b) {}
  Secret(const Secret& o) = default;
  Secret& operator=(const Secret& o) = default;
  ~Secret() { wipe(bytes_.data(), bytes_.size()); }
  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  const Bytes32& bytes() const { return bytes_; }
  Bytes32& bytes() { return bytes_; }
  bool isZero() const;

 private:
  Bytes32 bytes_;
};

using PublicKey = Bytes32;

void randomBytes(void* out, size_t size);

// HASH(a || b || ...).
Bytes32 hash(std::initializer_list<std::span<const uint8_t>> parts);
// MAC(key, data): keyed BLAKE2s with a 16-byte output.
Mac16 mac(std::span<const uint8_t> key, std::span<const uint8_t> data);
// HMAC-BLAKE2s.
Bytes32 hmac(std::span<const uint8_t> key, std::span<const uint8_t> data);
// KDF_n(key, input) → n outputs (1 ≤ n ≤ 3), per the WireGuard paper.
void kdf(const uint8_t* key, std::span<const uint8_t> input, Secret* t1, Secret* t2 = nullptr,
         Secret* t3 = nullptr);

// X25519. Private keys are clamped as WireGuard does.
Secret generatePrivateKey();
PublicKey publicKeyOf(const Secret& private_key);
// DH(private, public); nullopt when the result is all zeros (a low-order point).
std::optional<Secret> dh(const Secret& private_key, const PublicKey& public_key);

// One-shot AEAD with a 64-bit counter nonce (32 zero bits ‖ little-endian counter).
// `out` must hold plain.size() + 16 (seal) or sealed.size() - 16 (open) bytes; open returns false
// on a bad tag or a short input.
void aeadSeal(const uint8_t* key, uint64_t counter, std::span<const uint8_t> plain,
              std::span<const uint8_t> ad, uint8_t* out);
bool aeadOpen(const uint8_t* key, uint64_t counter, std::span<const uint8_t> sealed,
              std::span<const uint8_t> ad, uint8_t* out);

// A ChaCha20-Poly1305 key with its cipher contexts kept, for transport data.
class AeadKey {
 public:
  explicit AeadKey(const Secret& key);
  ~AeadKey();
  AeadKey(const AeadKey&) = delete;
  AeadKey& operator=(const AeadKey&) = delete;
  void seal(uint64_t counter, std::span<const uint8_t> plain, uint8_t* out);
  bool open(uint64_t counter, std::span<const uint8_t> sealed, uint8_t* out);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

void xaeadSeal(const uint8_t* key, const uint8_t* nonce24, std::span<const uint8_t> plain,
               std::span<const uint8_t> ad, uint8_t* out);
bool xaeadOpen(const uint8_t* key, const uint8_t* nonce24, std::span<const uint8_t> sealed,
               std::span<const uint8_t> ad, uint8_t* out);

// Keys in WireGuard's text form (standard base64 of 32 bytes).
std::string toBase64(const Bytes32& key);
Result<Bytes32> fromBase64(std::string_view text);
std::string toHex(std::span<const uint8_t> bytes);
Result<Bytes32> keyFromHex(std::string_view text);

// Constant-time comparison.
bool equalBytes(const uint8_t* a, const uint8_t* b, size_t n);

}  // namespace wsa::wg
