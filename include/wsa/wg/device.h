#pragma once
// The WireGuard protocol engine: peers, handshakes, cookies, keypairs, timers and the data path
// (whitepaper §5–6). It does no I/O and reads no clock of its own: datagrams and IP packets are
// handed to it and it hands datagrams and IP packets back through `Io`; every timer runs on the
// injected `Clock`, so tests drive the protocol's timers without waiting.
//
// Single-threaded: call everything on the thread (loop) that runs the clock's timers.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/wg/allowed_ips.h"
#include "wsa/wg/crypto.h"
#include "wsa/wg/endpoint.h"

namespace wsa::wg {

// The protocol's constants (whitepaper §6.1); tests shorten them.
struct Timing {
  Duration rekey_after_time = std::chrono::seconds(120);
  Duration reject_after_time = std::chrono::seconds(180);
  Duration rekey_attempt_time = std::chrono::seconds(90);
  Duration rekey_timeout = std::chrono::seconds(5);
  Duration keepalive_timeout = std::chrono::seconds(10);
  Duration cookie_lifetime = std::chrono::seconds(120);
  // Initiations from one peer closer together than this are dropped (flood guard).
  Duration min_initiation_interval = std::chrono::milliseconds(20);
  uint64_t rekey_after_messages = uint64_t{1} << 60;
  uint64_t reject_after_messages = ~uint64_t{0} - (uint64_t{1} << 13);
  std::chrono::milliseconds max_jitter{333};
};

struct DeviceOptions {
  Timing timing;
  size_t mtu = 1420;                 // inner packets are padded up to a multiple of 16, ≤ mtu
  size_t max_staged_per_peer = 128;  // packets waiting for a handshake; the oldest go first
  size_t max_peers = 65536;
  // Handshake messages per second beyond which the device is under load for the next second:
  // handshakes without a valid mac2 then get a cookie reply, and each source address is
  // limited to `handshakes_per_source_per_second` (burst 5).
  uint32_t under_load_handshakes_per_second = 1000;
  uint32_t handshakes_per_source_per_second = 20;
};

enum class Drop : uint8_t {
  kShort,  // shorter than any message / wrong size for its type
  kUnknownType,
  kBadMac1,
  kCookieSent,        // under load without a valid mac2: answered with a cookie reply
  kRateLimited,       // under load, too many handshakes from one source
  kBadHandshake,      // does not decrypt / unknown peer / wrong state
  kStaleTimestamp,    // an initiation not newer than the last one (replayed)
  kHandshakeFlood,    // initiations from one peer too close together
  kUnknownIndex,      // data or response for no session of ours
  kExpiredKey,        // data for a keypair past its lifetime or message limit
  kReplay,            // counter seen before or too old
  kBadAuth,           // data that does not authenticate
  kBadCookie,         // cookie reply that does not decrypt
  kBadPacket,         // decrypted payload that is not an IP packet
  kSourceNotAllowed,  // inner source address not in the peer's allowed IPs
  kNoRoute,           // outgoing packet for no peer
  kNoEndpoint,        // outgoing packet for a peer without an endpoint
  kStagedOverflow,    // staged queue full: the oldest waiting packet was dropped
  kHandshakeGaveUp,   // staged packets dropped after REKEY_ATTEMPT_TIME without a handshake
  kCount,
};
const char* dropName(Drop d);

struct Counters {
  uint64_t initiations_sent = 0, initiations_received = 0;
  uint64_t responses_sent = 0, responses_received = 0;
  uint64_t cookie_replies_sent = 0, cookie_replies_received = 0;
  uint64_t handshakes_completed = 0;  // sessions established (either role)
  uint64_t rekeys = 0;                // of those, with a peer that had a session before
  uint64_t keepalives_sent = 0;
  std::array<uint64_t, static_cast<size_t>(Drop::kCount)> drops{};
  uint64_t dropped(Drop d) const { return drops[static_cast<size_t>(d)]; }
};

struct PeerConfig {
  PublicKey public_key{};
  std::optional<Secret> preshared_key;
  std::optional<Endpoint> endpoint;
  std::optional<std::vector<Prefix>> allowed_ips;  // replaces the peer's list when given
  std::optional<Duration> persistent_keepalive;    // zero disables
  // Roaming (the endpoint follows the latest authenticated source; on by default). Off: only
  // setPeer changes it (or the first packet, while it has none): path probes choose it.
  std::optional<bool> roaming;
};

struct PeerStatus {
  PublicKey public_key{};
  Endpoint endpoint;
  std::vector<Prefix> allowed_ips;
  std::optional<SystemTime> last_handshake;
  uint64_t rx_bytes = 0, tx_bytes = 0;      // all authenticated datagrams, as wg counts
  uint64_t rx_packets = 0, tx_packets = 0;  // inner data packets
  uint64_t handshakes = 0;
  Duration persistent_keepalive{};
  bool has_session = false;
};

class Peer;

class Device {
 public:
  struct Io {
    // A datagram for the network.
    std::function<void(const Endpoint&, std::span<const uint8_t>)> send;
    // A decrypted, verified inner IP packet (valid during the call).
    std::function<void(std::span<const uint8_t>)> deliver;
  };

  Device(Clock& clock, DeviceOptions options, Io io);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Sets (or changes) our private key; existing sessions are dropped.
  void setPrivateKey(const Secret& key);
  const PublicKey& publicKey() const;
  bool hasPrivateKey() const;
  // For the configuration API only (`wg showconf`): the keys as configured.
  const Secret& privateKey() const;
  std::optional<Secret> presharedKey(const PublicKey& peer) const;

  // Adds a peer or changes one; other peers are not disturbed.
  Status setPeer(const PeerConfig& config);
  bool removePeer(const PublicKey& key);
  void removeAllPeers();

  // A datagram from the network (decrypted in place).
  void receive(const Endpoint& from, std::span<uint8_t> datagram);
  // An IP packet to send through the tunnel.
  void send(std::span<const uint8_t> ip_packet);
  // Starts a handshake now (rekey on demand).
  void initiateHandshake(const PublicKey& key);
  // Sends our initiation again now, when we sent one at least `min_age` ago and no session came
  // of it (the path changed: the first may have been lost on the old one). True when sent.
  bool retryHandshake(const PublicKey& key, Duration min_age);

  std::vector<PeerStatus> peers() const;
  std::optional<PeerStatus> peer(const PublicKey& key) const;
  const Counters& counters() const;
  bool underLoad() const;
  size_t sessionCount() const;  // live keypairs, for tests and metrics

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::wg
