#pragma once
// WireGuard's message formats (whitepaper §5.4). All integers little-endian.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace wsa::wg {

constexpr uint8_t kMsgInitiation = 1;
constexpr uint8_t kMsgResponse = 2;
constexpr uint8_t kMsgCookieReply = 3;
constexpr uint8_t kMsgData = 4;

// Initiation: type(4) sender(4) ephemeral(32) static(32+16) timestamp(12+16) mac1(16) mac2(16)
constexpr size_t kInitiationSize = 148;
constexpr size_t kInitiationSenderOffset = 4;
constexpr size_t kInitiationEphemeralOffset = 8;
constexpr size_t kInitiationStaticOffset = 40;
constexpr size_t kInitiationTimestampOffset = 88;
constexpr size_t kInitiationMacOffset = 116;

// Response: type(4) sender(4) receiver(4) ephemeral(32) empty(0+16) mac1(16) mac2(16)
constexpr size_t kResponseSize = 92;
constexpr size_t kResponseSenderOffset = 4;
constexpr size_t kResponseReceiverOffset = 8;
constexpr size_t kResponseEphemeralOffset = 12;
constexpr size_t kResponseEmptyOffset = 44;
constexpr size_t kResponseMacOffset = 60;

// Cookie reply: type(4) receiver(4) nonce(24) cookie(16+16)
constexpr size_t kCookieReplySize = 64;
constexpr size_t kCookieReceiverOffset = 4;
constexpr size_t kCookieNonceOffset = 8;
constexpr size_t kCookieOffset = 32;

// Transport data: type(4) receiver(4) counter(8) packet(n+16)
constexpr size_t kDataHeaderSize = 16;
constexpr size_t kDataMinSize = kDataHeaderSize + 16;
constexpr size_t kDataReceiverOffset = 4;
constexpr size_t kDataCounterOffset = 8;

inline uint32_t readLe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
inline uint64_t readLe64(const uint8_t* p) {
  return static_cast<uint64_t>(readLe32(p)) | static_cast<uint64_t>(readLe32(p + 4)) << 32;
}
inline void writeLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void writeLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
// The 4-byte header: type and three reserved zero bytes.
inline void writeType(uint8_t* p, uint8_t type) {
  p[0] = type;
  p[1] = p[2] = p[3] = 0;
}

}  // namespace wsa::wg
