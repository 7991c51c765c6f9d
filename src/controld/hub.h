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

// Every open server stream. Streams are owned by shared_ptrs (the stream holds itself until
// its OnDone), so the hub can keep one alive while it calls closeStream outside its lock.
class StreamHandle : public std::enable_shared_from_this<StreamHandle> {
 public:
  virtual ~StreamHandle() = default;
  // Ends the stream (server shutdown, replaced by a newer one). Idempotent.
  virtual void closeStream(const std::string& reason) = 0;
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

class RelaySink : public virtual StreamHandle {
 public:
  // Queues one packet from `source_key`; false when the queue is full (the packet is dropped).
  virtual bool pushPacket(const std::string& source_key, const std::string& payload) = 0;
};

struct HubCounters {
  uint64_t relay_forwarded = 0;
  uint64_t relay_no_route = 0;
  uint64_t relay_denied = 0;
  uint64_t relay_queue_full = 0;
};

class Hub {
 public:
  struct Callbacks {
    // Called (outside the hub lock) when an agent's first event stream opens / last one closes.
    std::function<void(const std::string& agent_id, bool connected)> on_agent_connection;
  };

  Hub(std::vector<AgentIdentity> agents, Callbacks callbacks);

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
  };

  using CloseList = std::vector<std::pair<std::shared_ptr<StreamHandle>, std::string>>;
  void closeAll(const CloseList& list);
  void coordinateLocked(CoordinationSink* sink, const Principal& who,
                        const overlay::v1::CoordinateRequest& request, CloseList* to_close);
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
  std::map<std::string, RelaySink*> relays_;               // key -> sink
  struct RelayBinding {
    std::string key;
    std::string peer_id;  // who published the key when the stream was bound
  };
  std::map<RelaySink*, RelayBinding> relay_keys_;  // sink -> binding
  HubCounters counters_;
};

}  // namespace wsa::controld
