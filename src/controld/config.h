#pragma once
// controld's JSON configuration. Parsing is strict: unknown fields, wrong types and impossible
// values are errors naming the file, the field path and the problem.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "controld/store.h"
#include "wsa/agent/v1/manifest.pb.h"
#include "wsa/common/result.h"
#include "wsa/overlay/v1/relay_map.pb.h"

namespace wsa::controld {

struct UserConfig {
  std::string name;
  std::string token;
};

struct AgentConfig {
  std::string name;
  std::string token;
  std::vector<std::string> allowed_users;
  std::string owner;              // defaults to the first allowed user
  std::string workspace_name;     // defaults to the agent name
  uint64_t log_budget_bytes = 0;  // 0: the global default
  // Manifest as configured: agent id, names and addresses are filled in when served.
  agent::v1::Manifest manifest;
};

struct Config {
  std::string admin_token;
  std::vector<UserConfig> users;
  std::vector<AgentConfig> agents;
  uint64_t log_budget_bytes = 1u << 20;
  uint32_t stats_report_interval_seconds = 60;
  std::optional<Banner> banner;  // initial banner when the database has none
  overlay::v1::RelayMap relay_map;
  // No relay_map in the file: controld itself is region 1 (its relay and its STUN listeners,
  // whose ports the server fills in once they are bound).
  bool default_relay_map = false;

  const AgentConfig* findAgent(const std::string& name) const;
};

Result<Config> loadConfig(const std::string& path);
// `source` names the text in error messages (a file path).
Result<Config> parseConfig(const std::string& text, const std::string& source);
// A complete, working example with fresh random tokens.
std::string exampleConfig();

}  // namespace wsa::controld
