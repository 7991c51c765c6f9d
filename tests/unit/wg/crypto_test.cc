// Known-answer tests for the primitives under the WireGuard engine, and its small parts:
// replay window, allowed IPs, endpoints, keys.

#include "wsa/wg/crypto.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>

#include "wg/noise.h"
#include "wg/replay.h"
#include "wsa/wg/allowed_ips.h"
#include "wsa/wg/endpoint.h"

namespace wsa::wg {
namespace {

// Test vectors in hex (keyFromHex has its own test below).
Bytes32 key32(std::string_view h) {
  return *keyFromHex(h);
}

TEST(WgCryptoTest, Blake2sKnownAnswer) {
  // RFC 7693 appendix B: BLAKE2s-256("abc").
  std::string abc = "abc";
  Bytes32 h = hash({{reinterpret_cast<const uint8_t*>(abc.data()), abc.size()}});
  EXPECT_EQ(toHex(h), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
  // Split input hashes the same.
  Bytes32 h2 = hash({{reinterpret_cast<const uint8_t*>(abc.data()), 1},
                     {reinterpret_cast<const uint8_t*>(abc.data()) + 1, 2}});
  EXPECT_EQ(h, h2);
}

TEST(WgCryptoTest, X25519KnownAnswer) {
  // RFC 7748 §6.1.
  Secret alice(key32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  Secret bob(key32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  EXPECT_EQ(toHex(publicKeyOf(alice)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  EXPECT_EQ(toHex(publicKeyOf(bob)),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  auto s1 = dh(alice, publicKeyOf(bob));
  auto s2 = dh(bob, publicKeyOf(alice));
  ASSERT_TRUE(s1 && s2);
  EXPECT_EQ(toHex(s1->bytes()), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  EXPECT_EQ(s1->bytes(), s2->bytes());
  // A low-order point gives an all-zero secret: refused.
  PublicKey zero{};
  EXPECT_FALSE(dh(alice, zero));
  // Generated keys are clamped.
  Secret g = generatePrivateKey();
  EXPECT_EQ(g.data()[0] & 7, 0);
  EXPECT_EQ(g.data()[31] & 0xc0, 0x40);
}

TEST(WgCryptoTest, ChaCha20Poly1305MatchesLibsodiumAndRejectsTampering) {
  Secret key(key32("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"));
  std::string plain = "hello wireguard";
  std::vector<uint8_t> ad = {1, 2, 3};
  std::vector<uint8_t> sealed(plain.size() + 16);
  aeadSeal(key.data(), 42, {reinterpret_cast<const uint8_t*>(plain.data()), plain.size()}, ad,
           sealed.data());
  std::vector<uint8_t> opened(plain.size());
  ASSERT_TRUE(aeadOpen(key.data(), 42, sealed, ad, opened.data()));
  EXPECT_EQ(std::string(opened.begin(), opened.end()), plain);
  EXPECT_FALSE(aeadOpen(key.data(), 43, sealed, ad, opened.data()));  // wrong counter
  std::vector<uint8_t> other_ad = {1, 2, 4};
  EXPECT_FALSE(aeadOpen(key.data(), 42, sealed, other_ad, opened.data()));
  sealed[0] ^= 1;
  EXPECT_FALSE(aeadOpen(key.data(), 42, sealed, ad, opened.data()));
  EXPECT_FALSE(aeadOpen(key.data(), 42, {sealed.data(), 15}, ad, opened.data()));  // short
  // The cached-context key gives the same bytes as the one-shot function.
  sealed[0] ^= 1;
  AeadKey k(key);
  std::vector<uint8_t> sealed2(plain.size() + 16);
  std::vector<uint8_t> p(plain.begin(), plain.end());
  aeadSeal(key.data(), 7, p, {}, sealed.data());
  k.seal(7, p, sealed2.data());
  EXPECT_EQ(sealed, sealed2);
  std::vector<uint8_t> back(p.size());
  EXPECT_TRUE(k.open(7, sealed2, back.data()));
  EXPECT_EQ(back, p);
  // A second implementation of RFC 8439 (libsodium) with WireGuard's nonce layout
  // (32 zero bits, then the 64-bit counter little-endian) gives the same bytes.
  uint8_t nonce[12] = {0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};
  std::vector<uint8_t> sodium_out(p.size() + 16);
  unsigned long long len = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(sodium_out.data(), &len, p.data(), p.size(), nullptr, 0,
                                            nullptr, nonce, key.data());
  EXPECT_EQ(sodium_out, sealed2);
}

TEST(WgCryptoTest, XChaCha20Poly1305RoundTripAndTamper) {
  Secret key = generatePrivateKey();
  uint8_t nonce[24];
  randomBytes(nonce, sizeof(nonce));
  uint8_t cookie[16];
  randomBytes(cookie, sizeof(cookie));
  uint8_t ad[16] = {9};
  uint8_t sealed[32], opened[16];
  xaeadSeal(key.data(), nonce, {cookie, 16}, {ad, 16}, sealed);
  ASSERT_TRUE(xaeadOpen(key.data(), nonce, {sealed, 32}, {ad, 16}, opened));
  EXPECT_EQ(std::memcmp(cookie, opened, 16), 0);
  ad[0] ^= 1;
  EXPECT_FALSE(xaeadOpen(key.data(), nonce, {sealed, 32}, {ad, 16}, opened));
}

TEST(WgCryptoTest, KdfAndMacShapes) {
  Secret ck(key32("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
  Secret a, b, c;
  kdf(ck.data(), {}, &a, &b, &c);
  Secret a1;
  kdf(ck.data(), {}, &a1);
  EXPECT_EQ(a.bytes(), a1.bytes());  // the first output does not depend on how many are asked
  EXPECT_NE(a.bytes(), b.bytes());
  EXPECT_NE(b.bytes(), c.bytes());
  // HMAC-BLAKE2s and keyed BLAKE2s are different functions with the key.
  std::vector<uint8_t> data = {1, 2, 3};
  Mac16 m = mac({ck.data(), 32}, data);
  Bytes32 h = hmac({ck.data(), 32}, data);
  EXPECT_NE(std::memcmp(m.data(), h.data(), 16), 0);
}

TEST(WgCryptoTest, KeysInBase64AndHex) {
  Secret k(key32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  std::string b64 = toBase64(k.bytes());
  EXPECT_EQ(b64.size(), 44u);
  auto back = fromBase64(b64);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, k.bytes());
  EXPECT_FALSE(fromBase64("short"));
  EXPECT_FALSE(fromBase64(std::string(44, '!')));
  auto hex = keyFromHex(toHex(k.bytes()));
  ASSERT_TRUE(hex);
  EXPECT_EQ(*hex, k.bytes());
  EXPECT_FALSE(keyFromHex("zz"));
}

TEST(WgCryptoTest, Tai64nIsMonotonicAndWhitened) {
  auto a = tai64n(1'700'000'000'000'000'000);
  auto b = tai64n(1'700'000'000'000'000'001);  // within the same 2^24 ns slot
  auto c = tai64n(1'700'000'000'100'000'000);
  EXPECT_FALSE(tai64nAfter(b, a));
  EXPECT_TRUE(tai64nAfter(c, a));
  EXPECT_EQ(a[0], 0x40);  // TAI64 label
}

TEST(ReplayWindowTest, EdgeCases) {
  ReplayWindow w;
  EXPECT_TRUE(w.update(0));
  EXPECT_FALSE(w.update(0));  // replay
  EXPECT_TRUE(w.update(2));
  EXPECT_TRUE(w.update(1));  // out of order within the window
  EXPECT_FALSE(w.check(1));
  // Jump far ahead: everything behind the window is refused, everything in it once.
  uint64_t top = 100000;
  EXPECT_TRUE(w.update(top));
  EXPECT_FALSE(w.check(top - ReplayWindow::kWindow));
  EXPECT_TRUE(w.check(top - ReplayWindow::kWindow + 1));
  EXPECT_TRUE(w.update(top - ReplayWindow::kWindow + 1));
  EXPECT_FALSE(w.update(top - ReplayWindow::kWindow + 1));
  EXPECT_FALSE(w.check(2));
  // Sliding by one word at a time clears the bits that come around again.
  for (uint64_t c = top + 1; c < top + 3 * 8192; ++c) ASSERT_TRUE(w.update(c)) << c;
  for (uint64_t c = top + 3 * 8192 - ReplayWindow::kWindow + 1; c < top + 3 * 8192; ++c) {
    ASSERT_FALSE(w.check(c)) << c;
  }
  // The largest counters work.
  ReplayWindow big;
  EXPECT_TRUE(big.update(~uint64_t{0} - 1));
  EXPECT_FALSE(big.update(~uint64_t{0} - 1));
  EXPECT_TRUE(big.update(~uint64_t{0} - 2));
  big.reset();
  EXPECT_TRUE(big.check(0));
}

TEST(AllowedIpsTest, LongestPrefixWinsPerFamily) {
  AllowedIps t;
  auto* a = reinterpret_cast<Peer*>(0x1);
  auto* b = reinterpret_cast<Peer*>(0x2);
  t.insert(*parsePrefix("100.64.0.0/10"), a);
  t.insert(*parsePrefix("100.64.1.0/24"), b);
  t.insert(*parsePrefix("fd7a:115c:a1e0::/48"), a);
  t.insert(*parsePrefix("fd7a:115c:a1e0::2/128"), b);
  auto ip = [](const char* s) {
    auto p = parsePrefix(s);
    return p->addr;
  };
  EXPECT_EQ(t.lookup(ip("100.64.1.7").data(), false), b);
  EXPECT_EQ(t.lookup(ip("100.64.2.7").data(), false), a);
  EXPECT_EQ(t.lookup(ip("198.18.0.1").data(), false), nullptr);
  EXPECT_EQ(t.lookup(ip("fd7a:115c:a1e0::2").data(), true), b);
  EXPECT_EQ(t.lookup(ip("fd7a:115c:a1e0::3").data(), true), a);
  EXPECT_EQ(t.lookup(ip("fd7a:115c:a1e1::3").data(), true), nullptr);
  EXPECT_EQ(t.prefixesOf(b).size(), 2u);
  t.removePeer(b);
  EXPECT_EQ(t.lookup(ip("100.64.1.7").data(), false), a);
  EXPECT_EQ(t.size(), 2u);
  // Host bits are cleared; a default route matches everything of its family.
  EXPECT_EQ(parsePrefix("100.64.1.9/24")->toString(), "100.64.1.0/24");
  t.insert(*parsePrefix("0.0.0.0/0"), b);
  EXPECT_EQ(t.lookup(ip("198.18.0.1").data(), false), b);
  EXPECT_FALSE(parsePrefix("100.64.0.0/33"));
  EXPECT_FALSE(parsePrefix("nonsense/8"));
  EXPECT_FALSE(parsePrefix("::/129"));
  EXPECT_FALSE(parsePrefix("1.2.3.4/"));
}

TEST(EndpointTest, ParseFormatAndSockaddr) {
  auto e = parseEndpoint("198.18.0.1:51820");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->toString(), "198.18.0.1:51820");
  auto e6 = parseEndpoint("[fd00::1]:9");
  ASSERT_TRUE(e6);
  EXPECT_EQ(e6->toString(), "[fd00::1]:9");
  sockaddr_storage ss;
  socklen_t len = e6->toSockaddr(&ss);
  EXPECT_EQ(len, sizeof(sockaddr_in6));
  EXPECT_EQ(Endpoint::fromSockaddr(reinterpret_cast<sockaddr*>(&ss)), *e6);
  EXPECT_FALSE(parseEndpoint("198.18.0.1"));
  EXPECT_FALSE(parseEndpoint("198.18.0.1:0"));
  EXPECT_FALSE(parseEndpoint("198.18.0.1:70000"));
  EXPECT_FALSE(parseEndpoint("host.example:1"));
}

}  // namespace
}  // namespace wsa::wg
