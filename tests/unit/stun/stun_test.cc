#include "wsa/stun/stun.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace wsa::stun {
namespace {

using Bytes = std::vector<uint8_t>;

// RFC 5769 test vectors (sections 2.1, 2.2 and 2.3).
const TransactionId kRfcId = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                              0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

const Bytes kRfcRequest = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

const Bytes kRfcResponseV4 = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

const Bytes kRfcResponseV6 = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c};

wg::Endpoint ep(const std::string& s) {
  auto e = wg::parseEndpoint(s);
  EXPECT_TRUE(e) << s;
  return e ? *e : wg::Endpoint{};
}

// The value of the first attribute of `type`, or empty.
Bytes attributeValue(const Bytes& m, uint16_t type) {
  for (size_t off = kHeaderSize; off + 4 <= m.size();) {
    uint16_t t = static_cast<uint16_t>((m[off] << 8) | m[off + 1]);
    uint16_t len = static_cast<uint16_t>((m[off + 2] << 8) | m[off + 3]);
    if (t == type) return Bytes(m.begin() + off + 4, m.begin() + off + 4 + len);
    off += 4 + ((len + 3u) & ~3u);
  }
  return {};
}

void setLength(Bytes& m) {
  uint16_t len = static_cast<uint16_t>(m.size() - kHeaderSize);
  m[2] = static_cast<uint8_t>(len >> 8);
  m[3] = static_cast<uint8_t>(len);
}

// A Binding success response without FINGERPRINT, attributes given raw.
Bytes response(const Bytes& attributes) {
  Bytes m =
      buildBindingResponse(kRfcId, ep("192.0.2.1:32853"), {.software = "", .fingerprint = false});
  m.resize(kHeaderSize);
  m.insert(m.end(), attributes.begin(), attributes.end());
  setLength(m);
  return m;
}

TEST(StunTest, Crc32) {
  std::string s = "123456789";
  EXPECT_EQ(crc32({reinterpret_cast<const uint8_t*>(s.data()), s.size()}), 0xCBF43926u);
}

TEST(StunTest, Rfc5769SampleRequest) {
  ASSERT_TRUE(looksLikeStun(kRfcRequest));
  auto r = parseBindingRequest(kRfcRequest);  // FINGERPRINT checked; PRIORITY etc. skipped
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->id, kRfcId);
  EXPECT_EQ(r->software, "STUN test client");
  EXPECT_FALSE(parseBindingResponse(kRfcRequest));
}

TEST(StunTest, Rfc5769SampleResponses) {
  auto v4 = parseBindingResponse(kRfcResponseV4);
  ASSERT_TRUE(v4) << v4.error();
  EXPECT_EQ(v4->id, kRfcId);
  EXPECT_EQ(v4->mapped.toString(), "192.0.2.1:32853");
  EXPECT_TRUE(v4->xor_mapped);
  EXPECT_EQ(v4->software, "test vector");
  auto v6 = parseBindingResponse(kRfcResponseV6);
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->mapped.toString(), "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
  EXPECT_FALSE(parseBindingRequest(kRfcResponseV4));
}

TEST(StunTest, BuiltResponsesEncodeLikeTheRfc) {
  Bytes v4 = buildBindingResponse(kRfcId, ep("192.0.2.1:32853"));
  EXPECT_EQ(attributeValue(v4, kAttrXorMappedAddress),
            attributeValue(kRfcResponseV4, kAttrXorMappedAddress));
  Bytes v6 = buildBindingResponse(kRfcId, ep("[2001:db8:1234:5678:11:2233:4455:6677]:32853"));
  EXPECT_EQ(attributeValue(v6, kAttrXorMappedAddress),
            attributeValue(kRfcResponseV6, kAttrXorMappedAddress));
  EXPECT_EQ(attributeValue(v6, kAttrXorMappedAddress).size(), 20u);
}

TEST(StunTest, RoundTrips) {
  for (bool fingerprint : {false, true}) {
    for (std::string software : {"", "wsa", "wsa 1.0 (odd length)"}) {
      MessageOptions o{software, fingerprint};
      TransactionId id = randomTransactionId();
      Bytes req = buildBindingRequest(id, o);
      ASSERT_TRUE(looksLikeStun(req));
      EXPECT_EQ(req.size() % 4, 0u);
      auto pr = parseBindingRequest(req);
      ASSERT_TRUE(pr) << pr.error();
      EXPECT_EQ(pr->id, id);
      EXPECT_EQ(pr->software, software);
      for (const char* addr : {"198.18.0.1:1", "198.19.255.254:65535", "[::1]:3478",
                               "[2001:db8::1]:443", "[fe80::1:2:3:4]:51820"}) {
        for (bool with_mapped : {false, true}) {
          Bytes resp = buildBindingResponse(id, ep(addr), o, with_mapped);
          ASSERT_TRUE(looksLikeStun(resp));
          auto r = parseBindingResponse(resp);
          ASSERT_TRUE(r) << r.error();
          EXPECT_EQ(r->id, id);
          EXPECT_EQ(r->mapped.toString(), addr);
          EXPECT_TRUE(r->xor_mapped);
          EXPECT_EQ(peekHeader(resp).type, kBindingSuccess);
          EXPECT_EQ(peekHeader(resp).id, id);
        }
      }
    }
  }
  EXPECT_NE(randomTransactionId(), randomTransactionId());
}

TEST(StunTest, MappedAddressIsTheFallback) {
  // MAPPED-ADDRESS only: 198.18.0.7:4000 in the clear.
  Bytes m = response({0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x0f, 0xa0, 198, 18, 0, 7});
  auto r = parseBindingResponse(m);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->mapped.toString(), "198.18.0.7:4000");
  EXPECT_FALSE(r->xor_mapped);
  // A broken XOR-MAPPED-ADDRESS with a good MAPPED-ADDRESS: the latter.
  Bytes both = response({0x00, 0x20, 0x00, 0x08, 0x00, 0x03, 0x0f, 0xa0, 1,   2,  3, 4,  //
                         0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x0f, 0xa0, 198, 18, 0, 7});
  auto rb = parseBindingResponse(both);
  ASSERT_TRUE(rb) << rb.error();
  EXPECT_EQ(rb->mapped.toString(), "198.18.0.7:4000");
}

TEST(StunTest, UnknownAttributesAreSkipped) {
  Bytes xor_attr =
      attributeValue(buildBindingResponse(kRfcId, ep("198.18.0.9:9")), kAttrXorMappedAddress);
  Bytes attrs = {0x00, 0x24, 0x00, 0x04, 1,    2, 3, 4,  // PRIORITY (comprehension-required)
                 0x7f, 0x00, 0x00, 0x01, 0xaa, 0, 0, 0,  // unknown, padded
                 0xc0, 0x57, 0x00, 0x00,                 // unknown, empty
                 0x00, 0x20, 0x00, 0x08};
  attrs.insert(attrs.end(), xor_attr.begin(), xor_attr.end());
  auto r = parseBindingResponse(response(attrs));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->mapped.toString(), "198.18.0.9:9");
}

TEST(StunTest, MalformedMessagesAreErrors) {
  // No address at all; an error response; bad family; wrong lengths for the family; port 0.
  EXPECT_FALSE(parseBindingResponse(response({})));
  Bytes err = response({0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x04, 0x00});
  err[1] = 0x11;
  EXPECT_EQ(parseBindingResponse(err).error(), "a Binding error response");
  EXPECT_FALSE(parseBindingResponse(response({0x00, 0x20, 0x00, 0x08, 0, 3, 0, 1, 1, 2, 3, 4})));
  EXPECT_FALSE(parseBindingResponse(response({0x00, 0x20, 0x00, 0x08, 0, 2, 0, 1, 1, 2, 3, 4})));
  EXPECT_FALSE(parseBindingResponse(response({0x00, 0x20, 0x00, 0x04, 0, 1, 0, 1})));
  EXPECT_FALSE(parseBindingResponse(response({0x00, 0x20, 0x00, 0x00})));
  EXPECT_FALSE(parseBindingResponse(
      response({0x00, 0x20, 0x00, 0x08, 0, 1, 0x21, 0x12, 198, 18, 0, 1})));  // port 0
  // An attribute that overruns the message.
  EXPECT_EQ(
      parseBindingResponse(response({0x00, 0x20, 0x00, 0x0c, 0, 1, 0, 1, 1, 2, 3, 4})).error(),
      "an attribute overruns the message");
  EXPECT_FALSE(parseBindingRequest(response({0x00, 0x06, 0xff, 0xff})));
  // The header's length disagreeing with the datagram, or not a multiple of 4.
  Bytes req = buildBindingRequest(kRfcId);
  Bytes longer = req;
  longer.push_back(0);
  EXPECT_FALSE(looksLikeStun(longer));
  EXPECT_FALSE(parseBindingRequest(longer));
  Bytes odd = buildBindingRequest(kRfcId, {.software = "", .fingerprint = false});
  odd.push_back(0);
  odd.push_back(0);
  setLength(odd);
  EXPECT_FALSE(looksLikeStun(odd));
  // FINGERPRINT wrong, of the wrong size, or not last.
  Bytes bad_fp = buildBindingRequest(kRfcId, {.software = "abcd", .fingerprint = true});
  bad_fp[kHeaderSize + 4] ^= 1;
  EXPECT_EQ(parseBindingRequest(bad_fp).error(), "FINGERPRINT does not match");
  Bytes fp_first = response(
      {0x80, 0x28, 0x00, 0x04, 0, 0, 0, 0, 0x00, 0x20, 0x00, 0x08, 0, 1, 1, 1, 1, 1, 1, 1});
  EXPECT_EQ(parseBindingResponse(fp_first).error(), "FINGERPRINT is not the last attribute");
  // Every truncation of valid messages fails cleanly.
  for (const Bytes* m : {&kRfcRequest, &kRfcResponseV4, &kRfcResponseV6}) {
    for (size_t n = 0; n < m->size(); ++n) {
      std::span<const uint8_t> part(m->data(), n);
      EXPECT_FALSE(looksLikeStun(part));
      EXPECT_FALSE(parseBindingRequest(part));
      EXPECT_FALSE(parseBindingResponse(part));
    }
  }
}

TEST(StunTest, WireGuardAndProbeMessagesAreNotStun) {
  // WireGuard: initiation 148, response 92, cookie reply 64, transport >= 32 (keepalive), each
  // with the magic cookie where a STUN header has it (a receiver index can be anything).
  for (auto [type, size] : std::vector<std::pair<uint8_t, size_t>>{
           {1, 148}, {2, 92}, {3, 64}, {4, 32}, {4, 48}, {4, 1452}, {4, 20}, {1, 20}}) {
    Bytes m(size, 0);
    m[0] = type;
    m[4] = 0x21;
    m[5] = 0x12;
    m[6] = 0xa4;
    m[7] = 0x42;
    EXPECT_FALSE(looksLikeStun(m)) << int{type} << " " << size;
    EXPECT_FALSE(parseBindingResponse(m));
  }
  // The overlay's probe messages: "WSA\xf0\x9f\x92" then anything.
  for (size_t size : {20u, 32u, 64u, 100u}) {
    Bytes m(size, 0);
    const char magic[] = "WSA\xf0\x9f\x92";
    std::copy(magic, magic + 6, m.begin());
    EXPECT_FALSE(looksLikeStun(m));
    m[6] = 0xa4;
    m[7] = 0x42;
    EXPECT_FALSE(looksLikeStun(m));
  }
  EXPECT_EQ(peekHeader(Bytes(148, 1)).type, 0xFFFF);
}

TEST(StunTest, RandomInputNeverCrashes) {
  std::mt19937 rng(20261130);
  std::vector<Bytes> seeds = {kRfcRequest, kRfcResponseV4, kRfcResponseV6,
                              buildBindingResponse(kRfcId, ep("[2001:db8::1]:443"), {}, true)};
  size_t parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes m;
    if (i % 2 == 0) {
      // Mutations of valid messages: a few random bytes changed, the length kept consistent
      // half of the time so the attribute walk is reached.
      m = seeds[static_cast<size_t>(i / 2) % seeds.size()];
      int changes = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < changes; ++k) {
        size_t at = kHeaderSize + rng() % (m.size() - kHeaderSize);
        m[at] = static_cast<uint8_t>(rng());
      }
      if (rng() % 3 == 0) m.resize(kHeaderSize + (rng() % (m.size() - kHeaderSize + 1)) / 4 * 4);
      if (rng() % 2 == 0) setLength(m);
    } else {
      // Random bodies behind a plausible header.
      m.resize(kHeaderSize + (rng() % 64) * 4);
      for (auto& b : m) b = static_cast<uint8_t>(rng());
      m[0] &= 0x01;
      m[4] = 0x21;
      m[5] = 0x12;
      m[6] = 0xa4;
      m[7] = 0x42;
      setLength(m);
    }
    looksLikeStun(m);
    peekHeader(m);
    if (parseBindingRequest(m)) ++parsed;
    if (parseBindingResponse(m)) ++parsed;
  }
  EXPECT_GT(parsed, 0u);  // the walk was reached, not everything failed at the header
}

}  // namespace
}  // namespace wsa::stun
