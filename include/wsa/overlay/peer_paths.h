#pragma once
// Direct paths to peers, found and kept by path probes (src/overlay/probe.h), for every peer
// whose node says it answers them. A state machine on the injected Clock; its only I/O is the
// `Io` it is given (the engine's UDP socket and relay, and the device's peer endpoints).
//
// Per peer (docs/overlay.md, "Paths"):
//   - From the moment the peer is added its datagrams go through the relay (its stand-in
//     endpoint), unless the policy rules the relay out.
//   - Discovery: pings to every candidate endpoint (published by the peer, told by its
//     call-me-maybe, or learned from where its pings and pongs came from) every
//     `burst_interval` for `burst_length`, with a call-me-maybe through the relay at the start so
//     the peer pings ours at the same time (both NATs open). While relayed, a new burst every
//     `rediscover_active` when traffic flows, every `rediscover_idle` when not.
//   - A pong confirms its source endpoint (a source nobody published becomes a candidate): the
//     path moves to the confirmed endpoint with the lowest latency, at once; the WireGuard
//     session carries on over it (only its endpoint changes).
//   - While direct: a heartbeat ping to the path every `heartbeat_active` (traffic in the last
//     `active_window`) or `heartbeat_idle` (keeps NAT mappings open); a heartbeat unanswered
//     for `ping_timeout` moves the peer back to the relay and discovery starts again. Every
//     `upgrade_interval` while active, all candidates are pinged again (a better path wins when
//     its latency is below `better_ratio` of the current one and `better_margin_ms` lower).
//   - Policy: `direct` false (the manifest's disable_direct_connections, `wsa --relay always`):
//     the relay only and not one probe sent; `relay` false (`--relay never`): the first
//     candidate until a path is confirmed, and no relay.
//
// Loop thread only.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/overlay/path_selector.h"
#include "wsa/wg/crypto.h"
#include "wsa/wg/endpoint.h"

namespace wsa::overlay {

struct PathTiming {
  Duration tick = std::chrono::milliseconds(250);
  Duration burst_interval = std::chrono::milliseconds(500);
  Duration burst_length = std::chrono::seconds(5);
  Duration rediscover_active = std::chrono::seconds(5);
  Duration rediscover_idle = std::chrono::seconds(60);
  Duration heartbeat_active = std::chrono::milliseconds(1500);
  // The keepalive of an idle direct path (NAT mappings commonly last 30 s or more for UDP).
  Duration heartbeat_idle = std::chrono::seconds(20);
  Duration ping_timeout = std::chrono::milliseconds(2500);
  Duration active_window = std::chrono::seconds(45);
  Duration upgrade_interval = std::chrono::seconds(30);
  double better_ratio = 0.8;
  // ... and by at least this much: no hunting among paths that are all fast.
  double better_margin_ms = 2.0;
};

struct PathPolicy {
  bool direct = true;  // probes and direct paths
  bool relay = true;   // the relay
};

enum class ProbeDrop : uint8_t {
  kMalformed,      // too short, or no sender key
  kUnknownSender,  // the sender's key is not a peer that answers probes
  kBadAuth,        // does not open with the sender's key
  kUnmatchedPong,  // a pong for no ping of ours (late, replayed or forged)
  kDisabled,       // direct paths are off (policy)
  kPendingFull,    // a peer's outstanding pings at their bound
  kCount,
};
const char* probeDropName(ProbeDrop d);

struct ProbeStats {
  uint64_t pings_sent = 0, pings_received = 0;
  uint64_t pongs_sent = 0, pongs_received = 0;
  uint64_t call_me_maybe_sent = 0, call_me_maybe_received = 0;
  uint64_t path_changes = 0;
  uint64_t to_direct = 0, to_relay = 0;
  std::array<uint64_t, static_cast<size_t>(ProbeDrop::kCount)> drops{};
  uint64_t dropped(ProbeDrop d) const { return drops[static_cast<size_t>(d)]; }
};

// One peer as the paths see it (/debug/overlay, wsa ping, Stats).
struct PeerPathView {
  wg::PublicKey key{};
  Path path = Path::kNone;
  wg::Endpoint endpoint;             // the direct path's (when path is kDirect)
  std::optional<double> latency_ms;  // of the direct path's last pong
  struct Candidate {
    wg::Endpoint endpoint;
    bool published = false;              // from the peer's node or call-me-maybe
    std::optional<double> latency_ms;    // of its last pong
    std::optional<Duration> since_pong;  // time since its last pong
  };
  std::vector<Candidate> candidates;
  bool active = false;
};

class PeerPaths {
 public:
  struct Io {
    // A datagram for `to` (a relay stand-in goes through the relay).
    std::function<void(const wg::Endpoint& to, std::span<const uint8_t>)> send;
    // The relay stand-in for a peer.
    std::function<wg::Endpoint(const wg::PublicKey&)> relay_endpoint;
    // Points the device's peer at `endpoint` (a direct endpoint or the stand-in).
    std::function<void(const wg::PublicKey&, const wg::Endpoint& endpoint)> set_endpoint;
    // Datagrams exchanged with the peer so far (any count that grows with traffic).
    std::function<uint64_t(const wg::PublicKey&)> traffic;
    // The path changed (after set_endpoint): the engine starts a handshake over it when the
    // peer has no session (one attempted over the old path may have been lost).
    std::function<void(const wg::PublicKey&, Path)> path_changed;
  };
  // A path change, for logs and owners (wsa ping says when the path changed).
  using OnPathChange = std::function<void(const wg::PublicKey&, const PeerPathView&)>;

  static constexpr size_t kMaxCandidates = 32;
  static constexpr size_t kMaxPending = 64;

  PeerPaths(Clock& clock, PathTiming timing, Io io, std::string logger = "overlay");
  ~PeerPaths();
  PeerPaths(const PeerPaths&) = delete;
  PeerPaths& operator=(const PeerPaths&) = delete;

  void setKey(const wg::Secret& private_key);
  void setPolicy(PathPolicy policy);
  const PathPolicy& policy() const;
  // Our own candidates, sent in call-me-maybe.
  void setOwnCandidates(std::vector<wg::Endpoint> candidates);
  void setOnPathChange(OnPathChange f);

  // Adds a peer that answers probes, or updates its published candidates (a known peer keeps
  // its path). A new peer starts on the relay (or, without it, its first candidate) and
  // discovery starts; new candidates start a burst too.
  void upsertPeer(const wg::PublicKey& key, const std::vector<wg::Endpoint>& candidates);
  void removePeer(const wg::PublicKey& key);
  bool has(const wg::PublicKey& key) const;

  // A probe datagram (isProbe) from `from`: a UDP source, or the sender's relay stand-in.
  void receive(const wg::Endpoint& from, std::span<const uint8_t> datagram);

  // A ping on the peer's current path, answered through `done` (nullopt after ping_timeout).
  struct Pong {
    Path path = Path::kNone;
    wg::Endpoint endpoint;  // the direct endpoint (kDirect)
    double latency_ms = 0;
  };
  void ping(const wg::PublicKey& key, std::function<void(std::optional<Pong>)> done);

  std::optional<PeerPathView> peer(const wg::PublicKey& key) const;
  std::vector<PeerPathView> peers() const;
  const ProbeStats& stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::overlay
