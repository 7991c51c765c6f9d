#pragma once
// The client's choice of path to its agent: directly over UDP to the agent's published
// endpoint, or through the control server's relay — a state machine with no I/O, driven by the
// injected Clock (ManualClock in tests) and by what the owner reports.
//
// Inputs: the agent's node (with or without an endpoint; a new key when the agent restarted),
// its ready_for_handshake (or, 5 s after its first node, a fallback standing in for it), the
// relay stream ready or ended, and — asked when the 3 s direct grace expires — whether a
// WireGuard session with the agent exists.
// Outputs (Actions): point the agent peer at the direct endpoint or the relay stand-in, start a
// handshake, dial (once), or fail with a message for the user.
//
//   mode     agent's node          path
//   auto     with an endpoint      direct; dial; if no session 3 s after the dial: relay
//   auto     without               relay (once it is ready)
//   always   either                relay (once it is ready)
//   never    with an endpoint      direct, never the relay
//   never    without               fails: "the agent publishes no UDP endpoint, and --relay
//                                  never rules out the relay"
//
// The dial waits for the agent's node and its ready_for_handshake (or the 5 s fallback), and
// for the path (a relay that is needed must be ready). A relayed path stays relayed.
//
// States (state()): the phase the selection is in. The NAT traversal work (probing, upgrades)
// extends them.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"

namespace wsa::overlay {

enum class RelayMode { kAuto, kAlways, kNever };
enum class Path { kNone, kDirect, kRelay };

const char* relayModeName(RelayMode mode);  // "auto", "always", "never"
const char* pathName(Path path);            // "none", "direct", "relay"

class PathSelector {
 public:
  enum class State {
    kWaitingForNode,   // no node from the agent yet
    kWaitingForRelay,  // the relay is needed and not ready yet
    kWaitingForReady,  // the path is set; waiting for ready_for_handshake (or the fallback)
    kTryingDirect,     // dialed over the direct path; auto mode's grace for a session runs
    kDirect,           // dialed over the direct path, which stays (a session came, or no
                       // fallback: always/never)
    kRelayed,          // dialed through the relay (stays)
    kProbing,          // an agent that answers probes: the engine's PeerPaths chooses (the relay
                       // first, direct once a probe confirms it) and dialing has begun
    kFailed,           // failed (message()), or stopped by the owner
  };

  struct Options {
    RelayMode mode = RelayMode::kAuto;
    std::string agent;  // its name, for messages
    Duration direct_grace = std::chrono::seconds(3);
    Duration ready_fallback = std::chrono::seconds(5);
    std::string logger = "wsa";
  };

  struct Actions {
    // The path changed: point the agent peer at it (the direct endpoint or the relay
    // stand-in; with a Coordinator, setRoute). The route stays with the peer across its node's
    // changes: this is not called again for a new node. An error fails the selection with that
    // message.
    std::function<Status(Path)> use_path;
    // Start a WireGuard handshake with the agent now.
    std::function<void()> handshake;
    // Everything is ready: open the connection. Called once.
    std::function<void()> dial;
    // The selection failed; called once, with the message for the user.
    std::function<void(const std::string& message)> fail;
    // Whether a WireGuard session with the agent exists now.
    std::function<bool()> has_session;
    // An agent that answers probes: hand its path to the engine's PeerPaths (Route::kPaths).
    std::function<Status()> use_paths;
  };

  struct AgentNode {
    std::optional<std::string> endpoint;  // the first usable published endpoint, "ip:port"
    bool new_key = false;                 // the agent restarted (a known id, another key)
    bool probes = false;                  // it answers path probes (its node says so)
  };

  PathSelector(Clock& clock, Options options, Actions actions);
  ~PathSelector();
  PathSelector(const PathSelector&) = delete;
  PathSelector& operator=(const PathSelector&) = delete;

  void onAgentNode(const AgentNode& node);
  void onReadyForHandshake();
  void onRelayReady();
  // PeerPaths confirmed a direct path to the agent (probing agents).
  void onDirectPath();
  // The relay stream ended. Fails when the relay is (or will be) the path: "the relay through
  // the control server ended (CODE: MESSAGE)"; else only logged.
  void onRelayEnded(int code, const std::string& message);
  // The owner gave up (or is done): no action from now on; timers are cancelled.
  void stop();

  State state() const;
  Path path() const { return path_; }
  bool dialing() const { return dialing_; }
  bool fellBack() const { return fell_back_; }
  bool failed() const { return failed_; }
  const std::string& message() const { return message_; }
  // Whether the relay is the path or will be (so its end is fatal).
  bool relayNeeded() const;
  // The agent answers probes and PeerPaths chooses its path (with --relay always: the relay,
  // and no probe but those wsa ping sends through it).
  bool probingAgent() const { return probing(); }
  // Why the agent was not reached when no WireGuard handshake completed, naming the path tried:
  // "could not reach agent "dev": no WireGuard handshake completed over UDP to 127.0.0.1:9
  // (--relay never)". Only meaningful once a path is set.
  std::string noHandshakeMessage() const;

 private:
  void decide();
  bool probing() const;
  bool applyPath();
  void startDial();
  void watchDirect();
  void failWith(std::string message);

  Clock& clock_;
  Options options_;
  Actions actions_;
  std::unique_ptr<Timer> ready_fallback_;
  std::unique_ptr<Timer> direct_grace_;
  std::optional<AgentNode> node_;  // as the agent last published it
  Path path_ = Path::kNone;
  bool agent_ready_ = false;
  bool relay_ready_ = false;
  bool dialing_ = false;
  bool fell_back_ = false;  // auto mode: the direct path did not work
  bool failed_ = false;
  bool stopped_ = false;
  bool paths_ = false;  // handed to PeerPaths
  bool direct_confirmed_ = false;
  std::string message_;
};

}  // namespace wsa::overlay
