#include "wsa/wg/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "wg/messages.h"

namespace wsa::wg {

namespace {

// Failing here means OpenSSL lacks an algorithm the whole engine depends on: a broken install.
[[noreturn]] void fatal(const char* what) {
  std::fprintf(stderr, "wsa: crypto failure: %s\n", what);
  std::abort();
}

const EVP_MD* blake2s() {
  static EVP_MD* md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "BLAKE2S-256", nullptr);
    if (m == nullptr) fatal("BLAKE2S-256 unavailable");
    return m;
  }();
  return md;
}

EVP_MAC* macAlgo(const char* name) {
  EVP_MAC* m = EVP_MAC_fetch(nullptr, name, nullptr);
  if (m == nullptr) fatal(name);
  return m;
}

const EVP_CIPHER* chacha() {
  static EVP_CIPHER* c = [] {
    EVP_CIPHER* x = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
    if (x == nullptr) fatal("ChaCha20-Poly1305 unavailable");
    return x;
  }();
  return c;
}

void nonceOf(uint64_t counter, uint8_t nonce[12]) {
  std::memset(nonce, 0, 4);
  writeLe64(nonce + 4, counter);
}

struct CipherCtx {
  CipherCtx() : ctx(EVP_CIPHER_CTX_new()) {
    if (ctx == nullptr) fatal("EVP_CIPHER_CTX_new");
  }
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
  EVP_CIPHER_CTX* ctx;
};

void sealWith(EVP_CIPHER_CTX* ctx, const uint8_t* key, uint64_t counter,
              std::span<const uint8_t> plain, std::span<const uint8_t> ad, uint8_t* out) {
  uint8_t nonce[12];
  nonceOf(counter, nonce);
  int len = 0;
  if (EVP_EncryptInit_ex2(ctx, key == nullptr ? nullptr : chacha(), key, nonce, nullptr) != 1) {
    fatal("EVP_EncryptInit_ex2");
  }
  if (!ad.empty()) EVP_EncryptUpdate(ctx, nullptr, &len, ad.data(), static_cast<int>(ad.size()));
  if (!plain.empty()) {
    EVP_EncryptUpdate(ctx, out, &len, plain.data(), static_cast<int>(plain.size()));
  }
  EVP_EncryptFinal_ex(ctx, out + plain.size(), &len);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kAeadTagSize),
                      out + plain.size());
}

bool openWith(EVP_CIPHER_CTX* ctx, const uint8_t* key, uint64_t counter,
              std::span<const uint8_t> sealed, std::span<const uint8_t> ad, uint8_t* out) {
  if (sealed.size() < kAeadTagSize) return false;
  size_t n = sealed.size() - kAeadTagSize;
  uint8_t nonce[12];
  nonceOf(counter, nonce);
  int len = 0;
  if (EVP_DecryptInit_ex2(ctx, key == nullptr ? nullptr : chacha(), key, nonce, nullptr) != 1) {
    fatal("EVP_DecryptInit_ex2");
  }
  uint8_t tag[kAeadTagSize];
  std::memcpy(tag, sealed.data() + n, kAeadTagSize);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kAeadTagSize), tag);
  if (!ad.empty()) EVP_DecryptUpdate(ctx, nullptr, &len, ad.data(), static_cast<int>(ad.size()));
  if (n > 0) EVP_DecryptUpdate(ctx, out, &len, sealed.data(), static_cast<int>(n));
  return EVP_DecryptFinal_ex(ctx, out + n, &len) == 1;
}

}  // namespace

void wipe(void* data, size_t size) {
  OPENSSL_cleanse(data, size);
}

bool Secret::isZero() const {
  uint8_t acc = 0;
  for (uint8_t b : bytes_) acc |= b;
  return acc == 0;
}

void randomBytes(void* out, size_t size) {
  if (RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(size)) != 1) {
    fatal("RAND_bytes");
  }
}

Bytes32 hash(std::initializer_list<std::span<const uint8_t>> parts) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex2(ctx, blake2s(), nullptr) != 1) fatal("BLAKE2s init");
  for (auto p : parts) EVP_DigestUpdate(ctx, p.data(), p.size());
  Bytes32 out;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, out.data(), &len);
  EVP_MD_CTX_free(ctx);
  return out;
}

Mac16 mac(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  static EVP_MAC* algo = macAlgo("BLAKE2SMAC");
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(algo);
  size_t size = kMacSize;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                         OSSL_PARAM_construct_end()};
  if (ctx == nullptr || EVP_MAC_init(ctx, key.data(), key.size(), params) != 1) fatal("BLAKE2SMAC");
  EVP_MAC_update(ctx, data.data(), data.size());
  Mac16 out;
  size_t len = 0;
  EVP_MAC_final(ctx, out.data(), &len, out.size());
  EVP_MAC_CTX_free(ctx);
  return out;
}

Bytes32 hmac(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  static EVP_MAC* algo = macAlgo("HMAC");
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(algo);
  char digest[] = "BLAKE2S-256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (ctx == nullptr || EVP_MAC_init(ctx, key.data(), key.size(), params) != 1) fatal("HMAC");
  EVP_MAC_update(ctx, data.data(), data.size());
  Bytes32 out;
  size_t len = 0;
  EVP_MAC_final(ctx, out.data(), &len, out.size());
  EVP_MAC_CTX_free(ctx);
  return out;
}

void kdf(const uint8_t* key, std::span<const uint8_t> input, Secret* t1, Secret* t2, Secret* t3) {
  Secret prk(hmac({key, kKeySize}, input));
  uint8_t one = 1;
  Secret out1(hmac({prk.data(), kKeySize}, {&one, 1}));
  if (t2 != nullptr || t3 != nullptr) {
    uint8_t buf[kKeySize + 1];
    std::memcpy(buf, out1.data(), kKeySize);
    buf[kKeySize] = 2;
    Secret out2(hmac({prk.data(), kKeySize}, {buf, sizeof(buf)}));
    if (t3 != nullptr) {
      std::memcpy(buf, out2.data(), kKeySize);
      buf[kKeySize] = 3;
      *t3 = Secret(hmac({prk.data(), kKeySize}, {buf, sizeof(buf)}));
    }
    wipe(buf, sizeof(buf));
    if (t2 != nullptr) *t2 = out2;
  }
  if (t1 != nullptr) *t1 = out1;
}

Secret generatePrivateKey() {
  Secret k;
  randomBytes(k.data(), kKeySize);
  k.data()[0] &= 248;
  k.data()[31] &= 127;
  k.data()[31] |= 64;
  return k;
}

PublicKey publicKeyOf(const Secret& private_key) {
  EVP_PKEY* pkey =
      EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(), kKeySize);
  if (pkey == nullptr) fatal("X25519 private key");
  PublicKey pub;
  size_t len = pub.size();
  EVP_PKEY_get_raw_public_key(pkey, pub.data(), &len);
  EVP_PKEY_free(pkey);
  return pub;
}

std::optional<Secret> dh(const Secret& private_key, const PublicKey& public_key) {
  EVP_PKEY* mine =
      EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(), kKeySize);
  EVP_PKEY* theirs =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, public_key.data(), kKeySize);
  std::optional<Secret> result;
  if (mine != nullptr && theirs != nullptr) {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(mine, nullptr);
    Secret shared;
    size_t len = kKeySize;
    if (ctx != nullptr && EVP_PKEY_derive_init(ctx) == 1 &&
        EVP_PKEY_derive_set_peer(ctx, theirs) == 1 &&
        EVP_PKEY_derive(ctx, shared.data(), &len) == 1 && len == kKeySize && !shared.isZero()) {
      result = shared;
    }
    EVP_PKEY_CTX_free(ctx);
  }
  EVP_PKEY_free(mine);
  EVP_PKEY_free(theirs);
  return result;
}

void aeadSeal(const uint8_t* key, uint64_t counter, std::span<const uint8_t> plain,
              std::span<const uint8_t> ad, uint8_t* out) {
  CipherCtx c;
  sealWith(c.ctx, key, counter, plain, ad, out);
}

bool aeadOpen(const uint8_t* key, uint64_t counter, std::span<const uint8_t> sealed,
              std::span<const uint8_t> ad, uint8_t* out) {
  CipherCtx c;
  return openWith(c.ctx, key, counter, sealed, ad, out);
}

struct AeadKey::Ctx {
  CipherCtx enc, dec;
};

AeadKey::AeadKey(const Secret& key) : ctx_(std::make_unique<Ctx>()) {
  // Keyed once; each packet only sets its nonce.
  if (EVP_EncryptInit_ex2(ctx_->enc.ctx, chacha(), key.data(), nullptr, nullptr) != 1 ||
      EVP_DecryptInit_ex2(ctx_->dec.ctx, chacha(), key.data(), nullptr, nullptr) != 1) {
    fatal("AEAD key");
  }
}

AeadKey::~AeadKey() = default;  // EVP_CIPHER_CTX_free cleanses the key schedule

void AeadKey::seal(uint64_t counter, std::span<const uint8_t> plain, uint8_t* out) {
  sealWith(ctx_->enc.ctx, nullptr, counter, plain, {}, out);
}

bool AeadKey::open(uint64_t counter, std::span<const uint8_t> sealed, uint8_t* out) {
  return openWith(ctx_->dec.ctx, nullptr, counter, sealed, {}, out);
}

void xaeadSeal(const uint8_t* key, const uint8_t* nonce24, std::span<const uint8_t> plain,
               std::span<const uint8_t> ad, uint8_t* out) {
  unsigned long long len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out, &len, plain.data(), plain.size(), ad.data(),
                                             ad.size(), nullptr, nonce24, key);
}

bool xaeadOpen(const uint8_t* key, const uint8_t* nonce24, std::span<const uint8_t> sealed,
               std::span<const uint8_t> ad, uint8_t* out) {
  if (sealed.size() < kAeadTagSize) return false;
  unsigned long long len = 0;
  return crypto_aead_xchacha20poly1305_ietf_decrypt(out, &len, nullptr, sealed.data(),
                                                    sealed.size(), ad.data(), ad.size(), nonce24,
                                                    key) == 0;
}

std::string toBase64(const Bytes32& key) {
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, key.data(), static_cast<int>(key.size()));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

Result<Bytes32> fromBase64(std::string_view text) {
  if (text.size() != 44 || text[43] != '=' || text[42] == '=') {
    return makeError("a key is 44 characters of base64 (32 bytes)");
  }
  unsigned char out[48];
  int n = EVP_DecodeBlock(out, reinterpret_cast<const unsigned char*>(text.data()), 44);
  if (n != 33) return makeError("a key is 44 characters of base64 (32 bytes)");
  Bytes32 k;
  std::memcpy(k.data(), out, 32);
  wipe(out, sizeof(out));
  return k;
}

std::string toHex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

Result<Bytes32> keyFromHex(std::string_view text) {
  if (text.size() != 64) return makeError("a hex key is 64 characters");
  Bytes32 k;
  for (size_t i = 0; i < 32; ++i) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nib(text[2 * i]), lo = nib(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return makeError("a hex key is 64 hexadecimal characters");
    k[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return k;
}

bool equalBytes(const uint8_t* a, const uint8_t* b, size_t n) {
  return CRYPTO_memcmp(a, b, n) == 0;
}

}  // namespace wsa::wg
