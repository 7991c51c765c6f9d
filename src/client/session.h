#pragma once
// A session to one workspace agent: who the agent is (LookupAgent: the user must be allowed to
// reach it), this client's overlay identity for the session, the overlay engine, the
// coordination that introduces the two peers, the path to the agent (direct UDP or the control
// server's relay), and dialing the agent's overlay ports. Each subcommand (commands.h) is a
// Command run over a session.
//
// Everything after connect() happens on the session's loop, one thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "client/exit.h"
#include "client/options.h"
#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/net/stream.h"
#include "wsa/overlay/discovery.h"

namespace asio {
class io_context;
}
namespace grpc {
class Channel;
}
namespace wsa::overlay::v1 {
class LookupAgentResponse;
}
namespace wsa::overlay {
class Coordinator;
struct CoordinatorTransport;
class Engine;
class PathSelector;
struct PeerEvent;
struct PeerPathView;
}  // namespace wsa::overlay
namespace wsa::wg {
struct PeerConfig;
}
namespace wsa::netstack {
class UdpFlow;
}
namespace spdlog {
class logger;
}

namespace wsa::client {

// The STUN servers of the control server's relay map: its first StreamRelayMaps message (the
// call is then cancelled), within `timeout`. An error when no map came.
Result<overlay::StunTargets> fetchStunTargets(const std::shared_ptr<grpc::Channel>& channel,
                                              const std::string& token, const std::string& url,
                                              bool resolve_hostnames, std::chrono::seconds timeout);

class Session;

// What a subcommand does over a session: `proxy`, `forward`, `speedtest` (and later
// `terminal`, `ping`).
class Command {
 public:
  virtual ~Command() = default;
  // The agent can be dialed now. Called once, on the loop.
  virtual void start(Session& session) = 0;
  // Teardown, before the engine goes: stop taking new work (close listeners).
  virtual void stop() {}
  // Teardown, once the engine has gone: wait for work off the loop (threads).
  virtual void join() {}
};

class Session {
 public:
  using Dialed = std::function<void(Result<net::ByteStreamPtr>)>;

  // Resolves the agent and gets this session's overlay identity. Fails with exit code 2 for a
  // bad --url, 1 when the control server cannot be used or refuses (unknown agent, a user not
  // allowed on it, an agent not connected).
  static Outcome<std::unique_ptr<Session>> connect(SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Brings up the overlay engine, coordinates with the agent and starts `command` once the agent
  // can be dialed; runs until the command finishes, the session fails or the connect deadline
  // passes, then tears everything down in order.
  Exit run(Command& command);

  // For commands, on the loop.
  asio::io_context& io() { return *io_; }
  const std::string& agentName() const { return options_.agent; }
  Clock& clock() { return *clock_; }
  // Opens an overlay TCP connection to the agent's `port`.
  void dial(uint16_t port, Dialed done);
  // Opens a UDP flow to the agent's overlay `port`; its datagrams go to `on_datagram` (called
  // on the loop, the payload valid for the call).
  Result<std::unique_ptr<netstack::UdpFlow>> openUdp(
      uint16_t port, std::function<void(std::span<const uint8_t>)> on_datagram);
  // dial(), and on success: the deadline no longer applies, the connection is logged; on
  // failure the session fails, saying why.
  void connectTo(uint16_t port, std::function<void(net::ByteStreamPtr)> connected);
  // The agent was reached: the connect deadline no longer applies.
  void reached();
  // Ends the session as a failure (exit code 1, "wsa: <message>"). The last failure is the one
  // reported (a dial that fails in the teardown after the deadline says why it did).
  void fail(std::string message);
  // Ends the session (successfully, unless it failed).
  void finish();
  // Ends the session on SIGINT or SIGTERM.
  void finishOnSignal();
  // Called when the path to the agent changes (probing agents: relay, direct, another
  // endpoint).
  void watchPath(std::function<void(const overlay::PeerPathView&)> watcher);
  // The engine (wsa ping probes the agent through its PeerPaths) and the loop's clock.
  overlay::Engine& engine();
  // The agent's WireGuard key, once its node is known.
  const wg::PeerConfig* agentPeer() const;

 private:
  class Signals;
  class StreamEnds;

  explicit Session(SessionOptions options);
  Exit lookup();
  void readRelayMap();
  Exit startEngine();
  void startCoordination();
  overlay::CoordinatorTransport transport();
  void onPeer(const overlay::PeerEvent& event);
  void onCoordinationEnded();
  void startCommand();
  void onDeadline();
  bool hasSession() const;
  std::string agentAddress() const;
  void teardown();

  SessionOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<Clock> clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<overlay::v1::LookupAgentResponse> found_;
  Command* command_ = nullptr;

  // The overlay: the engine on our overlay addresses, the coordination with the agent (our
  // node, the agent's, the relay stream), the choice of path to the agent.
  std::unique_ptr<overlay::Engine> engine_;
  std::unique_ptr<overlay::Coordinator> coordinator_;
  std::unique_ptr<overlay::PathSelector> path_;
  // The streams end on gRPC threads: the teardown waits for them before the loop goes.
  std::unique_ptr<StreamEnds> ends_;

  std::vector<std::function<void(const overlay::PeerPathView&)>> path_watchers_;
  std::vector<overlay::StunTarget> stun_targets_;
  std::string failure_;
  std::unique_ptr<Timer> deadline_;
  std::unique_ptr<Signals> signals_;
};

}  // namespace wsa::client
