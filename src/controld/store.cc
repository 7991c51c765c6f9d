#include "controld/store.h"

#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include <nlohmann/json.hpp>

#include "controld/sqlite.h"
#include "wsa/agent/v1/manifest.pb.h"
#include "wsa/common/secret.h"
#include "wsa/common/strings.h"
#include "wsa/common/uuid.h"

namespace wsa::controld {

namespace v1 = wsa::agent::v1;
using json = nlohmann::json;
using google::protobuf::util::TimeUtil;

namespace {

constexpr int kSchemaVersion = 1;
constexpr size_t kMaxMetadataBytes = 16 * 1024;

int64_t nanos(SystemTime t) {
  return toUnixNanos(t);
}
int64_t nanos(const google::protobuf::Timestamp& ts) {
  return TimeUtil::TimestampToNanoseconds(ts);
}

json timeOrNull(Statement& st, int col) {
  if (st.columnIsNull(col)) return nullptr;
  return formatRfc3339(fromUnixNanos(st.columnInt(col)));
}

std::string enumName(const std::string& full, const std::string& prefix) {
  std::string s = full;
  if (s.rfind(prefix, 0) == 0) s = s.substr(prefix.size());
  return toLower(s);
}

std::string truncateUtf8(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
  return s.substr(0, cut);
}

}  // namespace

std::string lifecycleName(int s) {
  return enumName(v1::LifecycleState_Name(static_cast<v1::LifecycleState>(s)), "LIFECYCLE_STATE_");
}
std::string logLevelName(int l) {
  return enumName(v1::LogLevel_Name(static_cast<v1::LogLevel>(l)), "LOG_LEVEL_");
}
std::string appHealthName(int h) {
  return enumName(v1::AppHealth_Name(static_cast<v1::AppHealth>(h)), "APP_HEALTH_");
}
std::string timingStageName(int s) {
  return enumName(v1::Timing::Stage_Name(static_cast<v1::Timing::Stage>(s)), "STAGE_");
}
std::string timingStatusName(int s) {
  return enumName(v1::Timing::Status_Name(static_cast<v1::Timing::Status>(s)), "STATUS_");
}
std::string connectionActionName(int a) {
  return enumName(v1::Connection::Action_Name(static_cast<v1::Connection::Action>(a)), "ACTION_");
}
std::string connectionTypeName(int t) {
  return enumName(v1::Connection::Type_Name(static_cast<v1::Connection::Type>(t)), "TYPE_");
}

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
  try {
    auto db = std::make_unique<Database>(path);
    db->exec("PRAGMA journal_mode=WAL");
    db->exec("PRAGMA synchronous=NORMAL");
    db->exec("PRAGMA foreign_keys=ON");
    std::unique_ptr<Store> store(new Store(std::move(db)));
    store->migrate();
    return store;
  } catch (const SqliteError& e) {
    return makeError(std::string("database: ") + e.what());
  }
}

Store::Store(std::unique_ptr<Database> db) : db_(std::move(db)) {}
Store::~Store() = default;

void Store::migrate() {
  std::lock_guard lock(mu_);
  db_->exec(R"sql(
    CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS agents(
      id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL,
      ipv4 TEXT UNIQUE NOT NULL, ipv6 TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL,
      connected INTEGER NOT NULL DEFAULT 0, first_connected_at INTEGER,
      last_connected_at INTEGER, disconnected_at INTEGER,
      logs_length INTEGER NOT NULL DEFAULT 0, logs_overflowed INTEGER NOT NULL DEFAULT 0,
      startup_version TEXT, startup_directory TEXT, startup_subsystems TEXT, startup_at INTEGER,
      stats_json TEXT, stats_at INTEGER);
    CREATE TABLE IF NOT EXISTS lifecycle(
      seq INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL REFERENCES agents(id),
      state INTEGER NOT NULL, changed_at INTEGER NOT NULL, received_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS lifecycle_agent ON lifecycle(agent_id, seq);
    CREATE TABLE IF NOT EXISTS metadata(
      agent_id TEXT NOT NULL REFERENCES agents(id), key TEXT NOT NULL, value TEXT NOT NULL,
      error TEXT NOT NULL, collected_at INTEGER NOT NULL, PRIMARY KEY(agent_id, key));
    CREATE TABLE IF NOT EXISTS app_health(
      agent_id TEXT NOT NULL REFERENCES agents(id), app_id TEXT NOT NULL,
      health INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY(agent_id, app_id));
    CREATE TABLE IF NOT EXISTS logs(
      id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL REFERENCES agents(id),
      source_id TEXT NOT NULL, source_name TEXT NOT NULL, level INTEGER NOT NULL,
      output TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS logs_agent ON logs(agent_id, id);
    CREATE TABLE IF NOT EXISTS log_cursors(
      agent_id TEXT NOT NULL, instance_id TEXT NOT NULL, source_id TEXT NOT NULL,
      last_sequence INTEGER NOT NULL, PRIMARY KEY(agent_id, instance_id, source_id));
    CREATE TABLE IF NOT EXISTS script_timings(
      id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL REFERENCES agents(id),
      script_id TEXT NOT NULL, stage INTEGER NOT NULL, status INTEGER NOT NULL,
      exit_code INTEGER NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS connections(
      id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL REFERENCES agents(id),
      connection_id TEXT NOT NULL, action INTEGER NOT NULL, type INTEGER NOT NULL,
      ts INTEGER NOT NULL, ip TEXT NOT NULL, status_code INTEGER NOT NULL, reason TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS banners(
      id INTEGER PRIMARY KEY CHECK (id = 1), enabled INTEGER NOT NULL, message TEXT NOT NULL,
      background_color TEXT NOT NULL, updated_at INTEGER NOT NULL);
  )sql");
  auto st = db_->prepare("SELECT version FROM schema_version");
  if (!st.step()) {
    db_->prepare("INSERT INTO schema_version(version) VALUES (?)").bind(1, kSchemaVersion).run();
  } else if (st.columnInt(0) > kSchemaVersion) {
    throw SqliteError("database schema version " + std::to_string(st.columnInt(0)) +
                      " is newer than this controld understands (" +
                      std::to_string(kSchemaVersion) + ")");
  }
}

AgentRecord Store::allocateAgentLocked(const std::string& name) {
  AgentRecord r;
  r.id = newUuid();
  r.name = name;
  auto bytes = *parseUuid(r.id);
  // IPv6: fd7a:115c:a1e0:a::/64 plus 64 bits of the id. IPv4: 100.64.0.0/11 (agents),
  // probing from a hash of the id until free. Clients use 100.96.0.0/11 and ...:c::/64.
  char v6[64];
  std::snprintf(v6, sizeof(v6), "fd7a:115c:a1e0:a:%02x%02x:%02x%02x:%02x%02x:%02x%02x/128",
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14],
                bytes[15]);
  r.ipv6 = v6;
  uint32_t h = (uint32_t(bytes[12]) << 24) | (uint32_t(bytes[13]) << 16) |
               (uint32_t(bytes[14]) << 8) | bytes[15];
  for (uint32_t probe = 0;; ++probe) {
    uint32_t host = (h + probe) & 0x1fffff;  // 21 bits
    if ((host & 0xff) == 0 || (host & 0xff) == 0xff) continue;
    uint32_t addr = (100u << 24) | (64u << 16) | host;
    char v4[32];
    std::snprintf(v4, sizeof(v4), "%u.%u.%u.%u/32", addr >> 24, (addr >> 16) & 0xff,
                  (addr >> 8) & 0xff, addr & 0xff);
    auto st = db_->prepare("SELECT 1 FROM agents WHERE ipv4 = ?");
    st.bind(1, std::string(v4));
    if (!st.step()) {
      r.ipv4 = v4;
      break;
    }
  }
  return r;
}

AgentRecord Store::ensureAgent(const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_->prepare("SELECT id, ipv4, ipv6 FROM agents WHERE name = ?");
  st.bind(1, name);
  if (st.step()) return {st.columnText(0), name, st.columnText(1), st.columnText(2)};
  AgentRecord r = allocateAgentLocked(name);
  db_->prepare("INSERT INTO agents(id, name, ipv4, ipv6, created_at) VALUES (?,?,?,?,?)")
      .bind(1, r.id)
      .bind(2, r.name)
      .bind(3, r.ipv4)
      .bind(4, r.ipv6)
      .bind(5, nanos(std::chrono::system_clock::now()))
      .run();
  return r;
}

std::optional<AgentRecord> Store::findAgent(const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_->prepare("SELECT id, ipv4, ipv6 FROM agents WHERE name = ?");
  st.bind(1, name);
  if (!st.step()) return std::nullopt;
  return AgentRecord{st.columnText(0), name, st.columnText(1), st.columnText(2)};
}

std::vector<AgentRecord> Store::listAgents() {
  std::lock_guard lock(mu_);
  std::vector<AgentRecord> out;
  auto st = db_->prepare("SELECT id, name, ipv4, ipv6 FROM agents ORDER BY name");
  while (st.step()) {
    out.push_back({st.columnText(0), st.columnText(1), st.columnText(2), st.columnText(3)});
  }
  return out;
}

bool Store::ipv4Taken(const std::string& cidr) {
  std::lock_guard lock(mu_);
  auto st = db_->prepare("SELECT 1 FROM agents WHERE ipv4 = ?");
  st.bind(1, cidr);
  return st.step();
}

void Store::setConnected(const std::string& agent_id, bool connected, SystemTime at) {
  std::lock_guard lock(mu_);
  if (connected) {
    db_->prepare(
           "UPDATE agents SET connected = 1, last_connected_at = ?1, "
           "first_connected_at = COALESCE(first_connected_at, ?1) WHERE id = ?2")
        .bind(1, nanos(at))
        .bind(2, agent_id)
        .run();
  } else {
    db_->prepare("UPDATE agents SET connected = 0, disconnected_at = ? WHERE id = ?")
        .bind(1, nanos(at))
        .bind(2, agent_id)
        .run();
  }
}

void Store::resetConnected(SystemTime at) {
  std::lock_guard lock(mu_);
  db_->prepare("UPDATE agents SET connected = 0, disconnected_at = ? WHERE connected = 1")
      .bind(1, nanos(at))
      .run();
}

bool Store::appendLifecycle(const std::string& agent_id, v1::LifecycleState state,
                            SystemTime changed_at, SystemTime received_at) {
  std::lock_guard lock(mu_);
  Transaction tx(*db_);
  auto last = db_->prepare(
      "SELECT state, changed_at FROM lifecycle WHERE agent_id = ? ORDER BY seq DESC LIMIT 1");
  last.bind(1, agent_id);
  if (last.step() && last.columnInt(0) == state && last.columnInt(1) == nanos(changed_at)) {
    return false;
  }
  db_->prepare("INSERT INTO lifecycle(agent_id, state, changed_at, received_at) VALUES (?,?,?,?)")
      .bind(1, agent_id)
      .bind(2, static_cast<int64_t>(state))
      .bind(3, nanos(changed_at))
      .bind(4, nanos(received_at))
      .run();
  tx.commit();
  return true;
}

void Store::setStartup(const std::string& agent_id, const v1::Startup& startup, SystemTime at) {
  json subsystems = json::array();
  for (int s : startup.subsystems()) {
    subsystems.push_back(enumName(v1::Subsystem_Name(static_cast<v1::Subsystem>(s)), "SUBSYSTEM_"));
  }
  std::lock_guard lock(mu_);
  db_->prepare(
         "UPDATE agents SET startup_version = ?, startup_directory = ?, startup_subsystems = ?, "
         "startup_at = ? WHERE id = ?")
      .bind(1, startup.version())
      .bind(2, startup.expanded_directory())
      .bind(3, subsystems.dump())
      .bind(4, nanos(at))
      .bind(5, agent_id)
      .run();
}

void Store::upsertMetadata(const std::string& agent_id, const std::string& key,
                           const std::string& value, const std::string& error,
                           SystemTime collected_at) {
  std::lock_guard lock(mu_);
  db_->prepare(
         "INSERT INTO metadata(agent_id, key, value, error, collected_at) VALUES (?,?,?,?,?) "
         "ON CONFLICT(agent_id, key) DO UPDATE SET value = excluded.value, "
         "error = excluded.error, collected_at = excluded.collected_at")
      .bind(1, agent_id)
      .bind(2, key)
      .bind(3, truncateUtf8(sanitizeUtf8(value), kMaxMetadataBytes))
      .bind(4, truncateUtf8(sanitizeUtf8(error), kMaxMetadataBytes))
      .bind(5, nanos(collected_at))
      .run();
}

void Store::setAppHealth(const std::string& agent_id, const std::string& app_id, int health,
                         SystemTime at) {
  std::lock_guard lock(mu_);
  db_->prepare(
         "INSERT INTO app_health(agent_id, app_id, health, updated_at) VALUES (?,?,?,?) "
         "ON CONFLICT(agent_id, app_id) DO UPDATE SET health = excluded.health, "
         "updated_at = excluded.updated_at")
      .bind(1, agent_id)
      .bind(2, app_id)
      .bind(3, static_cast<int64_t>(health))
      .bind(4, nanos(at))
      .run();
}

LogBatchResult Store::appendLogs(const std::string& agent_id,
                                 const v1::BatchCreateLogsRequest& request,
                                 const std::string& source_name, uint64_t budget_bytes,
                                 SystemTime now) {
  LogBatchResult result;
  std::lock_guard lock(mu_);
  Transaction tx(*db_);
  auto a = db_->prepare("SELECT logs_length, logs_overflowed FROM agents WHERE id = ?");
  a.bind(1, agent_id);
  if (!a.step()) throw SqliteError("unknown agent " + agent_id);
  uint64_t used = static_cast<uint64_t>(a.columnInt(0));
  if (a.columnInt(1) != 0) {
    result.limit_exceeded = true;
    return result;
  }
  int64_t last_seq = 0;
  bool have_cursor = false;
  if (!request.agent_instance_id().empty()) {
    auto c = db_->prepare(
        "SELECT last_sequence FROM log_cursors WHERE agent_id = ? AND instance_id = ? AND "
        "source_id = ?");
    c.bind(1, agent_id).bind(2, request.agent_instance_id()).bind(3, request.log_source_id());
    if (c.step()) {
      last_seq = c.columnInt(0);
      have_cursor = true;
    }
  }
  std::vector<const v1::Log*> fresh;
  uint64_t bytes = 0;
  int64_t max_seq = last_seq;
  for (const auto& log : request.logs()) {
    auto seq = static_cast<int64_t>(log.sequence());
    if (seq != 0 && seq <= last_seq) {
      ++result.duplicates;
      continue;
    }
    fresh.push_back(&log);
    bytes += log.output().size();
    max_seq = std::max(max_seq, seq);
  }
  if (used + bytes > budget_bytes) {
    db_->prepare("UPDATE agents SET logs_overflowed = 1 WHERE id = ?").bind(1, agent_id).run();
    tx.commit();
    result.limit_exceeded = true;
    return result;
  }
  auto ins = db_->prepare(
      "INSERT INTO logs(agent_id, source_id, source_name, level, output, created_at) "
      "VALUES (?,?,?,?,?,?)");
  for (const auto* log : fresh) {
    ins.reset();
    int64_t created = log->has_created_at() ? nanos(log->created_at()) : nanos(now);
    ins.bind(1, agent_id)
        .bind(2, request.log_source_id())
        .bind(3, source_name)
        .bind(4, static_cast<int64_t>(log->level()))
        .bind(5, sanitizeUtf8(log->output()))
        .bind(6, created)
        .run();
  }
  if (!fresh.empty()) {
    db_->prepare("UPDATE agents SET logs_length = logs_length + ? WHERE id = ?")
        .bind(1, static_cast<int64_t>(bytes))
        .bind(2, agent_id)
        .run();
  }
  if (!request.agent_instance_id().empty() && (max_seq > last_seq || !have_cursor)) {
    db_->prepare(
           "INSERT INTO log_cursors(agent_id, instance_id, source_id, last_sequence) "
           "VALUES (?,?,?,?) ON CONFLICT(agent_id, instance_id, source_id) DO UPDATE SET "
           "last_sequence = excluded.last_sequence")
        .bind(1, agent_id)
        .bind(2, request.agent_instance_id())
        .bind(3, request.log_source_id())
        .bind(4, max_seq)
        .run();
  }
  tx.commit();
  result.stored = fresh.size();
  result.stored_bytes = bytes;
  return result;
}

void Store::setStats(const std::string& agent_id, const std::string& stats_json, SystemTime at) {
  std::lock_guard lock(mu_);
  db_->prepare("UPDATE agents SET stats_json = ?, stats_at = ? WHERE id = ?")
      .bind(1, stats_json)
      .bind(2, nanos(at))
      .bind(3, agent_id)
      .run();
}

void Store::addScriptTiming(const std::string& agent_id, const v1::Timing& t) {
  std::lock_guard lock(mu_);
  db_->prepare(
         "INSERT INTO script_timings(agent_id, script_id, stage, status, exit_code, started_at, "
         "ended_at) VALUES (?,?,?,?,?,?,?)")
      .bind(1, agent_id)
      .bind(2, t.script_id())
      .bind(3, static_cast<int64_t>(t.stage()))
      .bind(4, static_cast<int64_t>(t.status()))
      .bind(5, static_cast<int64_t>(t.exit_code()))
      .bind(6, nanos(t.start()))
      .bind(7, nanos(t.end()))
      .run();
}

void Store::addConnection(const std::string& agent_id, const v1::Connection& c) {
  std::lock_guard lock(mu_);
  db_->prepare(
         "INSERT INTO connections(agent_id, connection_id, action, type, ts, ip, status_code, "
         "reason) VALUES (?,?,?,?,?,?,?,?)")
      .bind(1, agent_id)
      .bind(2, c.id())
      .bind(3, static_cast<int64_t>(c.action()))
      .bind(4, static_cast<int64_t>(c.type()))
      .bind(5, nanos(c.timestamp()))
      .bind(6, c.ip())
      .bind(7, static_cast<int64_t>(c.status_code()))
      .bind(8, sanitizeUtf8(c.reason()))
      .run();
}

std::optional<Banner> Store::banner() {
  std::lock_guard lock(mu_);
  auto st = db_->prepare("SELECT enabled, message, background_color FROM banners WHERE id = 1");
  if (!st.step()) return std::nullopt;
  return Banner{st.columnInt(0) != 0, st.columnText(1), st.columnText(2)};
}

void Store::setBanner(const Banner& b, SystemTime at) {
  std::lock_guard lock(mu_);
  db_->prepare(
         "INSERT INTO banners(id, enabled, message, background_color, updated_at) "
         "VALUES (1,?,?,?,?) ON CONFLICT(id) DO UPDATE SET enabled = excluded.enabled, "
         "message = excluded.message, background_color = excluded.background_color, "
         "updated_at = excluded.updated_at")
      .bind(1, b.enabled ? 1 : 0)
      .bind(2, b.message)
      .bind(3, b.background_color)
      .bind(4, nanos(at))
      .run();
}

json Store::agentSummary(const AgentRecord& agent) {
  std::lock_guard lock(mu_);
  json j;
  j["id"] = agent.id;
  j["name"] = agent.name;
  auto st =
      db_->prepare("SELECT connected, last_connected_at, disconnected_at FROM agents WHERE id = ?");
  st.bind(1, agent.id);
  if (st.step()) {
    j["connected"] = st.columnInt(0) != 0;
    j["last_connected_at"] = timeOrNull(st, 1);
    j["disconnected_at"] = timeOrNull(st, 2);
  }
  auto lc =
      db_->prepare("SELECT state FROM lifecycle WHERE agent_id = ? ORDER BY seq DESC LIMIT 1");
  lc.bind(1, agent.id);
  j["lifecycle_state"] =
      lc.step() ? json(lifecycleName(static_cast<int>(lc.columnInt(0)))) : json("created");
  return j;
}

json Store::agentView(const AgentRecord& agent, int64_t logs_after, int64_t logs_limit) {
  std::lock_guard lock(mu_);
  json j;
  j["id"] = agent.id;
  j["name"] = agent.name;
  j["overlay_addresses"] = json::array({agent.ipv4, agent.ipv6});
  auto a = db_->prepare(
      "SELECT connected, first_connected_at, last_connected_at, disconnected_at, logs_length, "
      "logs_overflowed, startup_version, startup_directory, startup_subsystems, startup_at, "
      "stats_json, stats_at FROM agents WHERE id = ?");
  a.bind(1, agent.id);
  if (!a.step()) return j;
  j["connected"] = a.columnInt(0) != 0;
  j["first_connected_at"] = timeOrNull(a, 1);
  j["last_connected_at"] = timeOrNull(a, 2);
  j["disconnected_at"] = timeOrNull(a, 3);
  j["logs_length"] = a.columnInt(4);
  j["logs_overflowed"] = a.columnInt(5) != 0;
  if (a.columnIsNull(9)) {
    j["startup"] = nullptr;
  } else {
    j["startup"] = {{"version", a.columnText(6)},
                    {"expanded_directory", a.columnText(7)},
                    {"subsystems", json::parse(a.columnText(8), nullptr, false)},
                    {"reported_at", timeOrNull(a, 9)}};
  }
  if (a.columnIsNull(11)) {
    j["stats"] = nullptr;
  } else {
    json stats = json::parse(a.columnText(10), nullptr, false);
    stats["reported_at"] = timeOrNull(a, 11);
    j["stats"] = stats;
  }

  json lifecycle = json::array();
  auto lc = db_->prepare(
      "SELECT state, changed_at, received_at FROM lifecycle WHERE agent_id = ? ORDER BY seq");
  lc.bind(1, agent.id);
  while (lc.step()) {
    lifecycle.push_back({{"state", lifecycleName(static_cast<int>(lc.columnInt(0)))},
                         {"changed_at", timeOrNull(lc, 1)},
                         {"received_at", timeOrNull(lc, 2)}});
  }
  j["lifecycle"] = lifecycle;

  json metadata = json::object();
  auto md = db_->prepare(
      "SELECT key, value, error, collected_at FROM metadata WHERE agent_id = ? ORDER BY key");
  md.bind(1, agent.id);
  while (md.step()) {
    metadata[md.columnText(0)] = {{"value", md.columnText(1)},
                                  {"error", md.columnText(2)},
                                  {"collected_at", timeOrNull(md, 3)}};
  }
  j["metadata"] = metadata;

  json health = json::object();
  auto ah =
      db_->prepare("SELECT app_id, health FROM app_health WHERE agent_id = ? ORDER BY app_id");
  ah.bind(1, agent.id);
  while (ah.step()) health[ah.columnText(0)] = appHealthName(static_cast<int>(ah.columnInt(1)));
  j["app_health"] = health;

  json logs = json::array();
  auto lg = db_->prepare(
      "SELECT id, source_id, source_name, level, output, created_at FROM logs "
      "WHERE agent_id = ? AND id > ? ORDER BY id LIMIT ?");
  lg.bind(1, agent.id).bind(2, logs_after).bind(3, logs_limit);
  while (lg.step()) {
    logs.push_back({{"id", lg.columnInt(0)},
                    {"source_id", lg.columnText(1)},
                    {"source", lg.columnText(2)},
                    {"level", logLevelName(static_cast<int>(lg.columnInt(3)))},
                    {"output", lg.columnText(4)},
                    {"created_at", timeOrNull(lg, 5)}});
  }
  j["logs"] = logs;

  json timings = json::array();
  auto tm = db_->prepare(
      "SELECT script_id, stage, status, exit_code, started_at, ended_at FROM script_timings "
      "WHERE agent_id = ? ORDER BY id");
  tm.bind(1, agent.id);
  while (tm.step()) {
    timings.push_back({{"script_id", tm.columnText(0)},
                       {"stage", timingStageName(static_cast<int>(tm.columnInt(1)))},
                       {"status", timingStatusName(static_cast<int>(tm.columnInt(2)))},
                       {"exit_code", tm.columnInt(3)},
                       {"start", timeOrNull(tm, 4)},
                       {"end", timeOrNull(tm, 5)}});
  }
  j["script_timings"] = timings;

  json conns = json::array();
  auto cn = db_->prepare(
      "SELECT connection_id, action, type, ts, ip, status_code, reason FROM connections "
      "WHERE agent_id = ? ORDER BY id");
  cn.bind(1, agent.id);
  while (cn.step()) {
    conns.push_back({{"id", cn.columnText(0)},
                     {"action", connectionActionName(static_cast<int>(cn.columnInt(1)))},
                     {"type", connectionTypeName(static_cast<int>(cn.columnInt(2)))},
                     {"timestamp", timeOrNull(cn, 3)},
                     {"ip", cn.columnText(4)},
                     {"status_code", cn.columnInt(5)},
                     {"reason", cn.columnText(6)}});
  }
  j["connections"] = conns;
  return j;
}

}  // namespace wsa::controld
