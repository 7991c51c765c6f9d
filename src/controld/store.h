#pragma once
// Persistent state of controld: what agents reported, in an embedded SQLite database. All
// methods are thread-safe (one mutex; SQLite in WAL mode). Failures throw SqliteError.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "wsa/agent/v1/connection.pb.h"
#include "wsa/agent/v1/lifecycle.pb.h"
#include "wsa/agent/v1/logs.pb.h"
#include "wsa/agent/v1/scripts.pb.h"
#include "wsa/common/result.h"
#include "wsa/common/time.h"

namespace wsa::controld {

class Database;

struct AgentRecord {
  std::string id;
  std::string name;
  std::string ipv4;  // CIDR
  std::string ipv6;  // CIDR
};

struct Banner {
  bool enabled = false;
  std::string message;
  std::string background_color;
};

struct LogBatchResult {
  bool limit_exceeded = false;
  size_t stored = 0;
  size_t duplicates = 0;
  uint64_t stored_bytes = 0;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::string& path);
  ~Store();

  // The agent's row, created with a fresh id and overlay addresses on first use.
  AgentRecord ensureAgent(const std::string& name);
  std::optional<AgentRecord> findAgent(const std::string& name);
  std::vector<AgentRecord> listAgents();
  // True if an agent already holds this overlay IPv4 (CIDR) — used for client allocation.
  bool ipv4Taken(const std::string& cidr);

  void setConnected(const std::string& agent_id, bool connected, SystemTime at);
  // Marks every agent disconnected (at startup: nobody is connected to a fresh process).
  void resetConnected(SystemTime at);
  // Appends a lifecycle report. A report equal to the last one stored (same state and time) is
  // a retry of an acknowledged call and is ignored; returns false then.
  bool appendLifecycle(const std::string& agent_id, agent::v1::LifecycleState state,
                       SystemTime changed_at, SystemTime received_at);
  void setStartup(const std::string& agent_id, const agent::v1::Startup& startup, SystemTime at);
  void upsertMetadata(const std::string& agent_id, const std::string& key, const std::string& value,
                      const std::string& error, SystemTime collected_at);
  void setAppHealth(const std::string& agent_id, const std::string& app_id, int health,
                    SystemTime at);
  // Stores new lines of a batch unless that would exceed budget_bytes (then nothing is stored
  // and the agent's logs are marked overflowed for good). Lines whose sequence number was
  // already stored for (instance, source) are skipped.
  LogBatchResult appendLogs(const std::string& agent_id,
                            const agent::v1::BatchCreateLogsRequest& request,
                            const std::string& source_name, uint64_t budget_bytes, SystemTime now);
  void setStats(const std::string& agent_id, const std::string& stats_json, SystemTime at);
  void addScriptTiming(const std::string& agent_id, const agent::v1::Timing& timing);
  void addConnection(const std::string& agent_id, const agent::v1::Connection& connection);

  std::optional<Banner> banner();
  void setBanner(const Banner& banner, SystemTime at);

  // The admin API's view of one agent. logs_after: only log rows with id > logs_after.
  nlohmann::json agentView(const AgentRecord& agent, int64_t logs_after = 0,
                           int64_t logs_limit = -1);
  nlohmann::json agentSummary(const AgentRecord& agent);

 private:
  explicit Store(std::unique_ptr<Database> db);
  void migrate();
  AgentRecord allocateAgentLocked(const std::string& name);

  std::mutex mu_;
  std::unique_ptr<Database> db_;
};

// Lower-case names for enums as the admin API shows them ("ready", "info", "healthy", ...).
std::string lifecycleName(int state);
std::string logLevelName(int level);
std::string appHealthName(int health);
std::string timingStageName(int stage);
std::string timingStatusName(int status);
std::string connectionActionName(int action);
std::string connectionTypeName(int type);

}  // namespace wsa::controld
