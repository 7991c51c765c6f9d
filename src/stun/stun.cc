#include "wsa/stun/stun.h"

#include <openssl/rand.h>

#include <cstring>
#include <optional>
#include <stdexcept>

namespace wsa::stun {

namespace {

constexpr uint32_t kFingerprintXor = 0x5354554E;
constexpr size_t kMaxSoftware = 763;

uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t get32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}
void set16(std::vector<uint8_t>& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}

void header(std::vector<uint8_t>& out, uint16_t type, const TransactionId& id) {
  put16(out, type);
  put16(out, 0);  // length, set by finish()
  put32(out, kMagicCookie);
  out.insert(out.end(), id.begin(), id.end());
}

void attribute(std::vector<uint8_t>& out, uint16_t type, const uint8_t* value, size_t len) {
  put16(out, type);
  put16(out, static_cast<uint16_t>(len));
  out.insert(out.end(), value, value + len);
  while (out.size() % 4 != 0) out.push_back(0);
}

// Sets the length, then appends FINGERPRINT when asked (its CRC covers the header with the
// length that includes the FINGERPRINT attribute itself).
void finish(std::vector<uint8_t>& out, const MessageOptions& options) {
  if (!options.software.empty()) {
    size_t n = std::min(options.software.size(), kMaxSoftware);
    attribute(out, kAttrSoftware, reinterpret_cast<const uint8_t*>(options.software.data()), n);
  }
  if (options.fingerprint) {
    set16(out, 2, static_cast<uint16_t>(out.size() - kHeaderSize + 8));
    uint32_t fp = crc32(out) ^ kFingerprintXor;
    put16(out, kAttrFingerprint);
    put16(out, 4);
    put32(out, fp);
  } else {
    set16(out, 2, static_cast<uint16_t>(out.size() - kHeaderSize));
  }
}

// The value of a (XOR-)MAPPED-ADDRESS attribute: reserved, family, port, address.
std::vector<uint8_t> addressValue(const wg::Endpoint& ep, bool xored, const TransactionId& id) {
  std::vector<uint8_t> v;
  v.push_back(0);
  v.push_back(ep.v6 ? 0x02 : 0x01);
  uint16_t port = xored ? static_cast<uint16_t>(ep.port ^ (kMagicCookie >> 16)) : ep.port;
  put16(v, port);
  uint8_t mask[16];
  mask[0] = static_cast<uint8_t>(kMagicCookie >> 24);
  mask[1] = static_cast<uint8_t>(kMagicCookie >> 16);
  mask[2] = static_cast<uint8_t>(kMagicCookie >> 8);
  mask[3] = static_cast<uint8_t>(kMagicCookie);
  std::memcpy(mask + 4, id.data(), id.size());
  size_t n = ep.v6 ? 16 : 4;
  for (size_t i = 0; i < n; ++i) v.push_back(xored ? ep.addr[i] ^ mask[i] : ep.addr[i]);
  return v;
}

Result<wg::Endpoint> parseAddress(const uint8_t* v, size_t len, bool xored, const TransactionId& id,
                                  const char* name) {
  if (len < 4) return makeError(std::string(name) + " is too short");
  uint8_t family = v[1];
  size_t n = family == 0x01 ? 4 : family == 0x02 ? 16 : 0;
  if (n == 0) return makeError(std::string(name) + " has unknown address family");
  if (len != 4 + n) return makeError(std::string(name) + " has the wrong length for its family");
  uint8_t mask[16];
  mask[0] = static_cast<uint8_t>(kMagicCookie >> 24);
  mask[1] = static_cast<uint8_t>(kMagicCookie >> 16);
  mask[2] = static_cast<uint8_t>(kMagicCookie >> 8);
  mask[3] = static_cast<uint8_t>(kMagicCookie);
  std::memcpy(mask + 4, id.data(), id.size());
  wg::Endpoint ep;
  ep.v6 = family == 0x02;
  ep.port = get16(v + 2);
  if (xored) ep.port = static_cast<uint16_t>(ep.port ^ (kMagicCookie >> 16));
  for (size_t i = 0; i < n; ++i) ep.addr[i] = xored ? v[4 + i] ^ mask[i] : v[4 + i];
  if (ep.port == 0) return makeError(std::string(name) + " has port 0");
  return ep;
}

struct Parsed {
  Header header;
  std::string software;
  std::optional<Result<wg::Endpoint>> xor_mapped;
  std::optional<Result<wg::Endpoint>> mapped;
};

// Walks the attributes of a STUN message; errors name the first problem.
Result<Parsed> parse(std::span<const uint8_t> d) {
  if (d.size() < kHeaderSize) return makeError("shorter than a STUN header");
  if (!looksLikeStun(d)) return makeError("not a STUN message");
  Parsed p;
  p.header = peekHeader(d);
  size_t off = kHeaderSize;
  bool after_integrity = false;
  while (off < d.size()) {
    // The total length is a multiple of 4, and so is off: an attribute header fits.
    uint16_t type = get16(d.data() + off);
    uint16_t len = get16(d.data() + off + 2);
    size_t padded = (size_t{len} + 3) & ~size_t{3};
    if (padded > d.size() - off - 4) return makeError("an attribute overruns the message");
    const uint8_t* v = d.data() + off + 4;
    if (type == kAttrFingerprint) {
      if (len != 4) return makeError("FINGERPRINT has the wrong length");
      if (off + 8 != d.size()) return makeError("FINGERPRINT is not the last attribute");
      if ((crc32(d.first(off)) ^ kFingerprintXor) != get32(v)) {
        return makeError("FINGERPRINT does not match");
      }
    } else if (!after_integrity) {  // attributes after MESSAGE-INTEGRITY are ignored
      switch (type) {
        case kAttrXorMappedAddress:
          if (!p.xor_mapped) {
            p.xor_mapped = parseAddress(v, len, true, p.header.id, "XOR-MAPPED-ADDRESS");
          }
          break;
        case kAttrMappedAddress:
          if (!p.mapped) p.mapped = parseAddress(v, len, false, p.header.id, "MAPPED-ADDRESS");
          break;
        case kAttrSoftware:
          p.software.assign(reinterpret_cast<const char*>(v), std::min<size_t>(len, kMaxSoftware));
          break;
        case kAttrMessageIntegrity:
          after_integrity = true;
          break;
        default:
          break;  // unknown, or known and of no use here
      }
    }
    off += 4 + padded;
  }
  return p;
}

}  // namespace

TransactionId randomTransactionId() {
  TransactionId id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return id;
}

uint32_t crc32(std::span<const uint8_t> data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::vector<uint8_t> buildBindingRequest(const TransactionId& id, const MessageOptions& options) {
  std::vector<uint8_t> out;
  out.reserve(64);
  header(out, kBindingRequest, id);
  finish(out, options);
  return out;
}

std::vector<uint8_t> buildBindingResponse(const TransactionId& id, const wg::Endpoint& mapped,
                                          const MessageOptions& options, bool with_mapped_address) {
  std::vector<uint8_t> out;
  out.reserve(96);
  header(out, kBindingSuccess, id);
  auto xv = addressValue(mapped, true, id);
  attribute(out, kAttrXorMappedAddress, xv.data(), xv.size());
  if (with_mapped_address) {
    auto mv = addressValue(mapped, false, id);
    attribute(out, kAttrMappedAddress, mv.data(), mv.size());
  }
  finish(out, options);
  return out;
}

Result<Request> parseBindingRequest(std::span<const uint8_t> datagram) {
  auto p = parse(datagram);
  if (!p) return makeError(p.error());
  if (p->header.type != kBindingRequest) return makeError("not a Binding request");
  return Request{p->header.id, std::move(p->software)};
}

Result<Response> parseBindingResponse(std::span<const uint8_t> datagram) {
  auto p = parse(datagram);
  if (!p) return makeError(p.error());
  if (p->header.type == kBindingError) return makeError("a Binding error response");
  if (p->header.type != kBindingSuccess) return makeError("not a Binding success response");
  Response r;
  r.id = p->header.id;
  r.software = std::move(p->software);
  if (p->xor_mapped && p->xor_mapped->ok()) {
    r.mapped = p->xor_mapped->value();
    r.xor_mapped = true;
  } else if (p->mapped && p->mapped->ok()) {
    r.mapped = p->mapped->value();
  } else if (p->xor_mapped) {
    return makeError(p->xor_mapped->error());
  } else if (p->mapped) {
    return makeError(p->mapped->error());
  } else {
    return makeError("no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS");
  }
  return r;
}

Header peekHeader(std::span<const uint8_t> d) {
  Header h;
  if (!looksLikeStun(d)) return h;
  h.type = get16(d.data());
  h.length = get16(d.data() + 2);
  std::memcpy(h.id.data(), d.data() + 8, h.id.size());
  return h;
}

bool looksLikeStun(std::span<const uint8_t> d) {
  if (d.size() < kHeaderSize) return false;
  if ((d[0] & 0xC0) != 0) return false;
  // WireGuard: type 1..4, three reserved zero bytes.
  if (d[0] >= 1 && d[0] <= 4 && d[1] == 0 && d[2] == 0 && d[3] == 0) return false;
  if (get32(d.data() + 4) != kMagicCookie) return false;
  uint16_t len = get16(d.data() + 2);
  return len % 4 == 0 && size_t{len} + kHeaderSize == d.size();
}

}  // namespace wsa::stun
