#pragma once
// STUN (RFC 8489) Binding messages, the part of STUN the overlay uses to learn how a NAT maps
// its UDP socket: build and parse Binding requests and success responses. No I/O, no state.
//
// A message is a 20-byte header — type (top two bits zero), attributes' length (a multiple of
// 4), the magic cookie 0x2112A442, a 96-bit transaction id — and TLV attributes padded to 4
// bytes. Responses carry XOR-MAPPED-ADDRESS (and MAPPED-ADDRESS for RFC 3489 clients), and
// both directions may end with FINGERPRINT (CRC-32 of the message before it, xor 0x5354554E),
// which parsing checks when present. Parsing never reads past the datagram: every length is
// checked, unknown attributes are skipped (no 420 answers: a Binding request is answered
// whatever else it carries), MESSAGE-INTEGRITY is not checked (no credentials are used).

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/wg/endpoint.h"

namespace wsa::stun {

inline constexpr uint32_t kMagicCookie = 0x2112A442;
inline constexpr uint16_t kDefaultPort = 3478;
inline constexpr size_t kHeaderSize = 20;

inline constexpr uint16_t kBindingRequest = 0x0001;
inline constexpr uint16_t kBindingSuccess = 0x0101;
inline constexpr uint16_t kBindingError = 0x0111;

inline constexpr uint16_t kAttrMappedAddress = 0x0001;
inline constexpr uint16_t kAttrMessageIntegrity = 0x0008;
inline constexpr uint16_t kAttrXorMappedAddress = 0x0020;
inline constexpr uint16_t kAttrSoftware = 0x8022;
inline constexpr uint16_t kAttrFingerprint = 0x8028;

using TransactionId = std::array<uint8_t, 12>;

// 96 random bits from the system's CSPRNG (what makes a response unforgeable off-path).
TransactionId randomTransactionId();

struct MessageOptions {
  std::string software;     // SOFTWARE attribute when not empty (truncated to 763 bytes)
  bool fingerprint = true;  // end with FINGERPRINT
};

std::vector<uint8_t> buildBindingRequest(const TransactionId& id,
                                         const MessageOptions& options = {});

struct Request {
  TransactionId id{};
  std::string software;
};
// A Binding request (class request, method Binding); anything else is an error naming why.
Result<Request> parseBindingRequest(std::span<const uint8_t> datagram);

// A Binding success response telling the requester `mapped` (the source address its request
// came from): XOR-MAPPED-ADDRESS, and MAPPED-ADDRESS when `with_mapped_address`.
std::vector<uint8_t> buildBindingResponse(const TransactionId& id, const wg::Endpoint& mapped,
                                          const MessageOptions& options = {},
                                          bool with_mapped_address = false);

struct Response {
  TransactionId id{};
  wg::Endpoint mapped;      // the reflexive address
  bool xor_mapped = false;  // from XOR-MAPPED-ADDRESS (else from MAPPED-ADDRESS)
  std::string software;
};
// A Binding success response with XOR-MAPPED-ADDRESS or, failing that, MAPPED-ADDRESS. Error
// responses and responses without an address are errors.
Result<Response> parseBindingResponse(std::span<const uint8_t> datagram);

// The message type and transaction id of anything that looksLikeStun (else nullopt-like:
// type 0xFFFF). Cheap; for dispatching before a full parse.
struct Header {
  uint16_t type = 0xFFFF;
  uint16_t length = 0;
  TransactionId id{};
};
Header peekHeader(std::span<const uint8_t> datagram);

// A cheap test that tells STUN from the overlay's other datagrams on the same socket: the top
// two bits of the first byte zero, the magic cookie at bytes 4..7, and the header's length a
// multiple of 4 equal to the datagram's size minus 20. False for every WireGuard message
// (type 1..4 then three zero bytes: a STUN length of 0 would mean a 20-byte datagram, and no
// WireGuard message is 20 bytes; they are also rejected outright) and for the overlay's probe
// messages (they start "WSA", whose 'W' has bit 6 set).
bool looksLikeStun(std::span<const uint8_t> datagram);

// CRC-32 (ISO-HDLC, as FINGERPRINT uses it). Exposed for tests.
uint32_t crc32(std::span<const uint8_t> data);

}  // namespace wsa::stun
