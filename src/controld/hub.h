#pragma once
// In-memory, thread-safe state of live connections: agents' event streams (for "connected" and
// server-pushed events), overlay coordination between clients and agents, and relay routing.
// It knows nothing of gRPC: streams are Sinks the service layer implements.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controld/relay_router.h"
#include "controld/relay_ticket.h"
#include "wsa/agent/v1/events.pb.h"
#include "wsa/overlay/v1/coordinate.pb.h"
#include "wsa/overlay/v1/relay.pb.h"

namespace wsa::metrics {
class Families;
}

namespace wsa::controld {

struct Principal {
  enum class Kind { kAgent, kUser };
  Kind kind = Kind::kUser;
  std::string name;      // agent or user name
  std::string agent_id;  // agents only
  bool isAgent() const { return kind == Kind::kAgent; }
};

// Identity the hub knows for an agent: id, name, overlay addresses, allowed users.
struct AgentIdentity {
  std::string id;
  std::string name;
  std::vector<std::string> addresses;
  std::set<std::string> allowed_users;
};

class EventSink : public virtual StreamHandle {
 public:
  // Queues an event; false if the stream's queue is full or the stream ended.
  virtual bool pushEvent(const agent::v1::ServerEvent& event) = 0;
};

class CoordinationSink : public virtual StreamHandle {
 public:
  virtual bool pushCoordination(const overlay::v1::CoordinateResponse& response) = 0;
};

using HubCounters = RelayCounters;

// How the hub issues relay tickets (relay_ticket.h) to coordinating peers.
struct TicketIssuing {
  const RelayTicketSigner* signer = nullptr;  // null: no tickets
  // Wall-clock time in Unix milliseconds (default: the system clock).
  std::function<int64_t()> now_unix_ms;
  int64_t lifetime_ms = 10 * 60 * 1000;
};

class Hub {
 public:
  struct Callbacks {
    // Called (outside the hub lock) when an agent's first event stream opens / last one closes.
    std::function<void(const std::string& agent_id, bool connected)> on_agent_connection;
  };

  Hub(std::vector<AgentIdentity> agents, Callbacks callbacks, TicketIssuing tickets = {});

  // Every stream registers when it starts and unregisters in OnDone (after which the hub never
  // touches it). openStream is false once the hub is shutting down: finish the call at once.
  bool openStream(StreamHandle* stream);
  void streamDone(StreamHandle* stream);
  size_t openStreamCount() const;

  // --- agent event streams ---
  // Registers a stream; false if the hub is shutting down.
  bool addEventStream(const std::string& agent_id, EventSink* sink);
  void removeEventStream(const std::string& agent_id, EventSink* sink);
  // Pushes to every connected agent (banners) or one agent; returns streams reached.
  size_t broadcastEvent(const agent::v1::ServerEvent& event);
  size_t sendEvent(const std::string& agent_id, const agent::v1::ServerEvent& event);
  bool agentConnected(const std::string& agent_id) const;

  // --- client identities ---
  struct ClientIdentity {
    std::string id;
    std::vector<std::string> addresses;
    // The last relay ticket sent on this stream.
    struct Ticket {
      std::string key;
      std::set<std::string> may_reach;
      int64_t issued_unix_ms = 0;
    };
    std::optional<Ticket> ticket;
  };
  // Issues a fresh client peer identity for `user`; `ipv4_taken` reports addresses in use.
  ClientIdentity issueClient(const std::string& user);
  const AgentIdentity* findAgentByName(const std::string& name) const;
  static bool userMayReach(const AgentIdentity& agent, const std::string& user);

  // --- coordination ---
  // Applies one request from a stream. Errors are sent back on the same stream.
  void coordinate(CoordinationSink* sink, const Principal& who,
                  const overlay::v1::CoordinateRequest& request);
  // The stream ended; graceful if the peer sent Disconnect.
  void coordinationEnded(CoordinationSink* sink);

  // --- relay ---
  // Binds a relay stream to a key the same principal published; returns an error or "".
  std::string addRelay(RelaySink* sink, const Principal& who, const std::string& key);
  void removeRelay(RelaySink* sink);
  void relay(RelaySink* from, const std::string& dest_key, const std::string& payload);
  HubCounters counters() const;

  // --- relay tickets ---
  // Reissues the tickets past half their lifetime (a periodic sweep, every minute or so).
  // Tickets are also (re)issued, within the coordination call, whenever a peer's key or the
  // keys it may reach change. Returns the number issued.
  size_t refreshTickets();
  uint64_t ticketsIssued() const;
  // The hub's collector: relay packets by outcome and the agents with an open event stream.
  void collectMetrics(metrics::Families& out) const;

  // Ends every stream and refuses new ones.
  void shutdown(const std::string& reason);

 private:
  struct Peer {
    std::string id;
    Principal who;
    bool is_agent = false;
    CoordinationSink* sink = nullptr;
    std::optional<overlay::v1::Node> node;
    bool graceful = false;
    std::vector<std::string> addresses;
    // The last relay ticket sent on this stream.
    struct Ticket {
      std::string key;
      std::set<std::string> may_reach;
      int64_t issued_unix_ms = 0;
    };
    std::optional<Ticket> ticket;
  };

  using CloseList = std::vector<std::pair<std::shared_ptr<StreamHandle>, std::string>>;
  void closeAll(const CloseList& list);
  // `tickets`: the peers whose relay tickets the request may have changed.
  void coordinateLocked(CoordinationSink* sink, const Principal& who,
                        const overlay::v1::CoordinateRequest& request, CloseList* to_close,
                        std::set<std::string>* tickets);
  void coordinationEndedLocked(CoordinationSink* sink, CloseList* to_close);
  std::string addRelayLocked(RelaySink* sink, const Principal& who, const std::string& key,
                             CloseList* to_close);
  void sendNodeLocked(const Peer& to, const Peer& about);
  void sendGoneLocked(const std::string& to_id, const std::string& about_id, bool graceful,
                      const std::string& reason);
  void sendErrorLocked(CoordinationSink* sink, const std::string& error);
  std::set<std::string> counterpartsLocked(const std::string& peer_id) const;
  bool tunnelLocked(const std::string& a, const std::string& b) const;
  Peer* peerBySinkLocked(CoordinationSink* sink);
  // Sends `p` a fresh ticket when its key or reachable keys changed, or it is past half-life
  // (or always, with `force`). True if one was sent.
  bool issueTicketLocked(Peer& p, bool force = false);
  void issueTicketsLocked(const std::set<std::string>& peer_ids);
  int64_t nowMs() const;

  mutable std::mutex mu_;
  Callbacks callbacks_;
  bool shut_down_ = false;
  std::map<std::string, AgentIdentity> agents_;  // by id
  std::map<std::string, std::set<EventSink*>> events_;
  std::map<std::string, ClientIdentity> clients_;    // issued, by id
  std::map<std::string, std::string> client_users_;  // client id -> user
  std::set<std::string> used_client_v4_;
  std::deque<std::string> client_order_;
  std::map<std::string, Peer> peers_;  // coordinating, by peer id
  std::map<CoordinationSink*, std::string> sink_peer_;
  std::set<StreamHandle*> open_;
  std::set<std::pair<std::string, std::string>> tunnels_;  // (client id, agent id)
  RelayRouter router_;  // binding owner: the peer id that published the key
  TicketIssuing issuing_;
  uint64_t ticket_serial_ = 0;
  uint64_t tickets_issued_ = 0;
};

}  // namespace wsa::controld
