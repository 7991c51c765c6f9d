#pragma once
// Coordination through the control server (Overlay.Coordinate) for one Engine, and the relay
// stream (Overlay.Relay) that goes with it. Shared by the agent and `wsa`.
//
// A session runs over one control connection: it opens the Coordinate stream, publishes our
// node (id, WireGuard key, the engine's CIDRs as addresses and allowed IPs, and — when
// configured — UDP endpoints) together with the tunnels we ask for, and applies every peer
// update the server sends to the engine's device:
//   KIND_NODE            the peer is added or changed (allowed IPs, endpoint per its route); a
//                        new key for a known id replaces the old peer (the peer restarted)
//   KIND_DISCONNECTED,   the peer is removed (when `remove_departed_peers`)
//   KIND_LOST
//   KIND_READY_FOR_HANDSHAKE  reported (the peer has added us: our first initiation will be
//                        answered)
// and, when `answer_ready_for_handshake`, tells peers just added (or with a new key) that they
// may handshake now. Peers stay configured across sessions (a reconnect does not count as
// "added" again).
//
// The relay stream is opened with the session (or after its first response: the server then
// has our node, and the relay's hello must name a published key) and, when `reopen`, opened
// again with backoff (250 ms doubling to 10 s, reset once a stream is acknowledged) whenever it
// ends while the session runs. It sits in the engine's relay slot, which keeps its counts.
//
// The transport opens the streams and delivers their callbacks on the loop: the agent's
// AgentApi (with its call accounting), or the client's own channel. Loop thread only.
//
// The agent: the defaults, endpoints from --overlay-endpoint; a session per control connection
// (src/agent/overlay.cc). The client (`wsa`), as designed: publish_endpoints = false,
// add_tunnels = {agent id}, tunnel_peers_only, answer_ready_for_handshake = false,
// remove_departed_peers = false, default_route = kNone, relay.open = kAfterFirstResponse (kNever
// for --relay never), relay.reopen = false; hooks.on_peer feeds PathSelector::onAgentNode
// (kAdded/kChanged/kNewKey) and onReadyForHandshake, on_relay_ready/on_relay_ended feed
// onRelayReady/onRelayEnded, on_server_error fails; PathSelector's use_path is
// setRoute(agent, kPublished or kRelay). Its transport (control::CoordinateStream::start and
// control::RelayStream::start on its channel) posts every callback, on_done included, to its
// loop and counts the calls, so that its teardown can wait for their ends before the loop goes.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/control/coordinate_stream.h"
#include "wsa/control/relay_stream.h"
#include "wsa/overlay/discovery.h"
#include "wsa/wg/device.h"

namespace wsa::overlay::v1 {
class CoordinateResponse_PeerUpdate;
}

namespace wsa::overlay {

class Engine;

// How the streams are opened. Both must deliver every callback but `post` (which they set) on
// the loop — on_done included — and may return null (no coordination, no relay).
struct CoordinatorTransport {
  std::function<std::shared_ptr<control::CoordinateStream>(control::CoordinateStream::Callbacks)>
      coordinate;
  std::function<std::shared_ptr<control::RelayStream>(const control::RelayStream::Key& hello_key,
                                                      control::RelayStream::Callbacks)>
      relay;
};

// Where a peer's datagrams go.
enum class Route {
  kNone,       // not configured on the device yet (the client, until its path is chosen)
  kPublished,  // the node's first usable endpoint (none: the peer's first packet tells it)
  kRelay,      // the peer's relay stand-in (the engine's relay slot)
  kPaths,      // chosen by the engine's PeerPaths (peers whose node says they answer probes):
               // the relay first, a direct path once probes confirm one; roaming off
};

struct CoordinatorOptions {
  // UDP endpoints published with our node. False: none (the client: it initiates, and the agent
  // learns its endpoint from its first authenticated packet).
  bool publish_endpoints = true;
  // "host" or "host:port" (the port defaults to the engine's UDP port); empty: the addresses of
  // this machine's interfaces (publishedEndpoints()).
  std::vector<std::string> endpoints;
  // Tunnels asked for with our node (the client: its agent's id).
  std::vector<std::string> add_tunnels;
  // Only peers named in add_tunnels are taken; updates for others are ignored.
  bool tunnel_peers_only = false;
  // Send ready_for_handshake for peers just added (the agent: clients wait for it).
  bool answer_ready_for_handshake = true;
  // Remove a peer from the device when the server says it disconnected or was lost.
  bool remove_departed_peers = true;
  // The route of a peer seen for the first time. A peer that answers probes gets kPaths
  // instead of kPublished when `probes` is on.
  Route default_route = Route::kPublished;
  // We answer path probes: published in our node, and peers that answer them too get kPaths.
  bool probes = true;

  struct Relay {
    enum class Open {
      kNever,
      kWithSession,         // at once (the agent)
      kAfterFirstResponse,  // once the server has answered (the client)
    } open = Open::kWithSession;
    bool reopen = true;  // false: a stream that ends is reported (on_relay_ended) and not reopened
    Duration backoff_floor = std::chrono::milliseconds(250);
    Duration backoff_cap = std::chrono::seconds(10);
  } relay;

  // Endpoint discovery (setStunTargets): STUN rounds, and how often this machine's interface
  // addresses are compared with those published (a change republishes and rediscovers).
  Discovery::Options discovery;
  Duration interfaces_interval = std::chrono::seconds(10);

  std::string logger = "overlay";
};

struct PeerEvent {
  enum class Kind {
    kAdded,              // a new peer is configured (per its route)
    kChanged,            // a known peer's node changed (or was sent again)
    kNewKey,             // a known id with a new key: the old peer was replaced
    kDeparted,           // disconnected or lost (`reason`); removed if remove_departed_peers
    kReadyForHandshake,  // the peer has added us
    kRejected,           // its node was unusable or the device refused it (`error`); ignored
  } kind;
  std::string id;
  // kAdded, kChanged, kNewKey: the peer as its node describes it (the endpoint is the
  // published one, whatever the route).
  const wg::PeerConfig* node = nullptr;
  std::string reason;  // kDeparted
  std::string error;   // kRejected
};

struct CoordinatorHooks {
  // Every peer event, after the device was updated.
  std::function<void(const PeerEvent&)> on_peer;
  // The server put an error into a response. Return false to ignore the rest of that response.
  // Default: a warning, and the response's updates are applied.
  std::function<bool(const std::string& error)> on_server_error;
  std::function<void()> on_relay_ready;
  // The relay stream ended (before a reopen, if any).
  std::function<void(int code, const std::string& message)> on_relay_ended;
  // The control server sent a fresh relay ticket (serialized overlay.v1.RelayTicket; also in
  // relayTicket()), after it went to the coordinator's own relay stream: for relay streams to
  // other relay nodes (setTicket).
  std::function<void(const std::string& ticket)> on_relay_ticket;
};

class Coordinator {
 public:
  using Done = std::function<void(int code, std::string message)>;

  Coordinator(Engine& engine, Clock& clock, CoordinatorOptions options,
              CoordinatorHooks hooks = {});
  ~Coordinator();  // ends the session (its streams are cancelled; `done` is still delivered)
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Starts a session over `transport` publishing our node under `id`. `done` runs once, on the
  // loop, when the Coordinate stream ends (whether stop() asked for it or not; also after the
  // coordinator is gone). Returns the session's number, or 0 when the transport opened no
  // stream (nothing runs, `done` is dropped). A session still running is stopped first.
  uint64_t start(const std::string& id, CoordinatorTransport transport, Done done);
  // Ends session `session` if it is the current one: the relay stops (no reopening) and the
  // Coordinate stream is cancelled; its end arrives through `done`. Responses arriving after
  // this are ignored.
  void stop(uint64_t session);
  bool running() const;

  // A coordinated peer's route; re-applies the peer to the device when its node is known.
  Status setRoute(const std::string& id, Route route);
  // Whether a known peer's node says it answers probes.
  bool peerAnswersProbes(const std::string& id) const;

  // What endpoint discovery found (STUN): our reflexive endpoints, whether the NAT's mapping
  // varies by destination, the relay regions' latencies and the home region. Published with our
  // node from now on (at once when a session runs and something changed).
  struct Discovered {
    std::vector<wg::Endpoint> reflexive;
    int mapping_varies = 0;  // overlay::v1::MappingVaries
    std::map<int, double> relay_latency_ms;
    int preferred_relay = 0;
    bool operator==(const Discovered&) const = default;
  };
  void setDiscovered(const Discovered& discovered);
  // Publishes our node again (this machine's addresses changed, say).
  void republish();
  // Starts (or retargets) endpoint discovery: STUN Binding requests from the engine's UDP
  // socket to `targets` (the relay map's STUN servers) every discovery.interval; what it finds
  // goes into our node (setDiscovered: the reflexive endpoints, whether the mapping varies, the
  // regions' latencies, the nearest region as home). Empty: no discovery. Also watches the
  // interface addresses every interfaces_interval.
  void setStunTargets(std::vector<StunTarget> targets);
  // The last discovery report (null before discovery started).
  const DiscoveryReport* discoveryReport() const;
  const Discovery::Stats* discoveryStats() const;
  // The endpoints we publish now, with their kinds (overlay::v1::Candidate::Kind).
  std::vector<std::pair<wg::Endpoint, int>> ownCandidates() const;
  // The latest relay ticket the control server sent (a serialized overlay.v1.RelayTicket), or
  // null before the first. It goes with every relay hello, and to the open relay stream when a
  // fresher one arrives; the ticket is what relay-only nodes take (docs/protocol.md).
  const std::string* relayTicket() const;
  // The peer as its node last described it, if known.
  const wg::PeerConfig* peer(const std::string& id) const;
  size_t peerCount() const;

  // Applies one peer update (what a session does for each update received; hooks.on_peer
  // reports it). True when it added a peer or replaced its key: the peer may handshake now
  // (a session answers ready_for_handshake for those). Public for tests and for owners that
  // feed updates themselves.
  bool applyPeerUpdate(const overlay::v1::CoordinateResponse_PeerUpdate& update);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::overlay
