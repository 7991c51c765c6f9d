#include "wsa/overlay/path_selector.h"

#include "wsa/common/logging.h"

namespace wsa::overlay {

const char* relayModeName(RelayMode mode) {
  switch (mode) {
    case RelayMode::kAuto:
      return "auto";
    case RelayMode::kAlways:
      return "always";
    case RelayMode::kNever:
      return "never";
  }
  return "?";
}

const char* pathName(Path path) {
  switch (path) {
    case Path::kNone:
      return "none";
    case Path::kDirect:
      return "direct";
    case Path::kRelay:
      return "relay";
  }
  return "?";
}

PathSelector::PathSelector(Clock& clock, Options options, Actions actions)
    : clock_(clock),
      options_(std::move(options)),
      actions_(std::move(actions)),
      ready_fallback_(clock_.createTimer()),
      direct_grace_(clock_.createTimer()) {}

PathSelector::~PathSelector() = default;

PathSelector::State PathSelector::state() const {
  if (failed_ || stopped_) return State::kFailed;
  if (!node_) return State::kWaitingForNode;
  if (probing()) {
    if (dialing_) return State::kProbing;
    return relayNeeded() && !relay_ready_ ? State::kWaitingForRelay : State::kWaitingForReady;
  }
  if (dialing_) {
    if (path_ == Path::kRelay) return State::kRelayed;
    if (relayNeeded()) return State::kWaitingForRelay;  // turning to the relay
    return direct_grace_->armed() ? State::kTryingDirect : State::kDirect;
  }
  if (relayNeeded() && path_ != Path::kRelay) return State::kWaitingForRelay;
  return State::kWaitingForReady;
}

bool PathSelector::probing() const {
  return node_ && node_->probes;
}

bool PathSelector::relayNeeded() const {
  if (probing()) {
    return options_.mode == RelayMode::kAlways ||
           (options_.mode == RelayMode::kAuto && !direct_confirmed_);
  }
  return path_ == Path::kRelay || options_.mode == RelayMode::kAlways || fell_back_ ||
         (node_ && !node_->endpoint);
}

std::string PathSelector::noHandshakeMessage() const {
  if (probing()) {
    return "could not reach agent \"" + options_.agent + "\": no WireGuard handshake completed " +
           (options_.mode == RelayMode::kNever
                ? "(no direct path answered probes, and --relay never rules out the relay)"
                : "through the relay or a direct path");
  }
  std::string how = path_ == Path::kRelay
                        ? "through the control server's relay"
                        : "over UDP to " + (node_ && node_->endpoint ? *node_->endpoint : "?") +
                              (options_.mode == RelayMode::kNever ? " (--relay never)" : "");
  return "could not reach agent \"" + options_.agent + "\": no WireGuard handshake completed " +
         how;
}

void PathSelector::onAgentNode(const AgentNode& node) {
  if (failed_ || stopped_) return;
  bool first = !node_;
  node_ = node;
  logging::get(options_.logger)
      ->info("agent node: endpoint {}", node.endpoint ? *node.endpoint : "(none)");
  // The route chosen stays with the agent's peer across its node's changes (the Coordinator
  // re-applies it), so use_path is called only when the path changes.
  if (first) {
    // The agent says when it has added us (ready_for_handshake); should that not come (an
    // agent that predates it), a grace period stands in for it.
    ready_fallback_->schedule(options_.ready_fallback, [this] {
      logging::get(options_.logger)
          ->info("the agent did not say it was ready for our handshake within {} s; dialing",
                 std::chrono::duration_cast<std::chrono::seconds>(options_.ready_fallback).count());
      agent_ready_ = true;
      decide();
    });
  }
  decide();
}

void PathSelector::onReadyForHandshake() {
  if (failed_ || stopped_) return;
  logging::get(options_.logger)->info("agent ready for our handshake");
  agent_ready_ = true;
  decide();
}

void PathSelector::onRelayReady() {
  if (failed_ || stopped_) return;
  relay_ready_ = true;
  logging::get(options_.logger)->debug("relay stream ready");
  decide();
}

void PathSelector::onDirectPath() {
  if (failed_ || stopped_ || direct_confirmed_) return;
  direct_confirmed_ = true;
  logging::get(options_.logger)->debug("a direct path to the agent is confirmed");
  decide();
}

void PathSelector::onRelayEnded(int code, const std::string& message) {
  relay_ready_ = false;
  if (failed_ || stopped_) return;
  if (relayNeeded()) {
    failWith("the relay through the control server ended (" + std::to_string(code) +
             (message.empty() ? "" : ": " + message) + ")");
  } else {
    logging::get(options_.logger)->debug("relay stream ended ({}: {})", code, message);
  }
}

void PathSelector::stop() {
  stopped_ = true;
  ready_fallback_->cancel();
  direct_grace_->cancel();
}

void PathSelector::failWith(std::string message) {
  if (failed_ || stopped_) return;
  failed_ = true;
  message_ = std::move(message);
  ready_fallback_->cancel();
  direct_grace_->cancel();
  if (actions_.fail) actions_.fail(message_);
}

bool PathSelector::applyPath() {
  Status st = actions_.use_path ? actions_.use_path(path_) : Status::success();
  if (!st) {
    failWith(st.error());
    return false;
  }
  return true;
}

void PathSelector::decide() {
  if (!node_ || failed_ || stopped_) return;
  auto log = logging::get(options_.logger);
  if (probing()) {
    // No grace period and no fixed choice: PeerPaths starts on the relay and moves to a direct
    // path as soon as a probe confirms one. Dialing may begin once either carries packets.
    if (options_.mode == RelayMode::kNever && !node_->endpoint) {
      failWith("the agent publishes no UDP endpoint, and --relay never rules out the relay");
      return;
    }
    if (!paths_) {
      paths_ = true;
      Status st = actions_.use_paths ? actions_.use_paths() : Status::success();
      if (!st) return failWith(st.error());
      log->info(options_.mode == RelayMode::kNever
                    ? "probing the agent's endpoints for a direct path (--relay never)"
                : options_.mode == RelayMode::kAlways
                    ? "reaching the agent through the control server's relay (--relay always)"
                    : "reaching the agent through the relay first, directly once a probe answers");
    }
    bool carried = direct_confirmed_ || (options_.mode != RelayMode::kNever && relay_ready_);
    if (carried && agent_ready_) startDial();
    return;
  }
  bool relayed = options_.mode == RelayMode::kAlways || !node_->endpoint || fell_back_;
  if (relayed) {
    if (options_.mode == RelayMode::kNever) {
      failWith("the agent publishes no UDP endpoint, and --relay never rules out the relay");
      return;
    }
    if (!relay_ready_) return;  // onRelayReady decides again
    if (path_ != Path::kRelay) {
      path_ = Path::kRelay;
      if (!applyPath()) return;
      log->info("reaching the agent through the control server's relay");
      if (dialing_ && actions_.handshake) actions_.handshake();
    }
  } else if (path_ == Path::kNone) {
    path_ = Path::kDirect;
    if (!applyPath()) return;
    log->info("reaching the agent directly at {}", *node_->endpoint);
  }
  if (agent_ready_) startDial();
}

void PathSelector::watchDirect() {
  // Handshake now (a forwarder may not send anything for a while) and give the direct path a
  // few seconds; in auto mode the relay takes over if no session comes of it.
  if (actions_.handshake) actions_.handshake();
  if (options_.mode != RelayMode::kAuto || path_ != Path::kDirect) return;
  direct_grace_->schedule(options_.direct_grace, [this] {
    if (failed_ || stopped_ || path_ != Path::kDirect) return;
    if (actions_.has_session && actions_.has_session()) return;
    logging::get(options_.logger)
        ->info("no direct handshake with the agent within {} s; using the relay",
               std::chrono::duration_cast<std::chrono::seconds>(options_.direct_grace).count());
    fell_back_ = true;
    decide();
  });
}

void PathSelector::startDial() {
  if (dialing_) return;
  dialing_ = true;
  ready_fallback_->cancel();
  watchDirect();
  if (actions_.dial) actions_.dial();
}

}  // namespace wsa::overlay
