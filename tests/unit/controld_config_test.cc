#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "controld/config.h"
#include "support/util.h"

namespace wsa::controld {
namespace {

using json = nlohmann::json;

json validConfig() {
  return json::parse(R"({
    "admin_token": "0123456789abcdef0123",
    "users": [{"name": "alice", "token": "aaaaaaaaaaaaaaaaaaaa"}],
    "agents": [{
      "name": "dev", "token": "bbbbbbbbbbbbbbbbbbbb", "allowed_users": ["alice"],
      "manifest": {
        "directory": "~/src",
        "environment_variables": {"A": "1"},
        "scripts": [{"display_name": "setup", "script": "true", "run_on_start": true,
                     "timeout_seconds": 5}],
        "metadata": [{"key": "load", "script": "cat /proc/loadavg", "interval_seconds": 10}],
        "apps": [{"slug": "web", "healthcheck": {"url": "http://127.0.0.1:1/", "interval_seconds": 2,
                  "threshold": 1}}]
      }
    }]
  })");
}

TEST(Config, ExampleParses) {
  auto c = parseConfig(exampleConfig(), "example");
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_EQ(c->agents.size(), 1u);
  EXPECT_GT(c->agents[0].manifest.scripts_size(), 0);
  // Fresh tokens on every call.
  EXPECT_NE(exampleConfig(), exampleConfig());
}

TEST(Config, ValidConfigFillsDefaultsAndStableIds) {
  auto c = parseConfig(validConfig().dump(), "c.json");
  ASSERT_TRUE(c.ok()) << c.error();
  const auto& a = c->agents[0];
  EXPECT_EQ(a.owner, "alice");
  EXPECT_EQ(a.workspace_name, "dev");
  EXPECT_EQ(c->log_budget_bytes, 1u << 20);
  ASSERT_EQ(a.manifest.scripts_size(), 1);
  auto again = parseConfig(validConfig().dump(), "c.json");
  EXPECT_EQ(a.manifest.scripts(0).id(), again->agents[0].manifest.scripts(0).id());
  EXPECT_EQ(a.manifest.scripts(0).log_source_id(),
            again->agents[0].manifest.scripts(0).log_source_id());
  EXPECT_EQ(a.manifest.apps(0).health(), agent::v1::APP_HEALTH_INITIALIZING);
  // The default relay map points at this server.
  ASSERT_EQ(c->relay_map.regions_size(), 1);
  EXPECT_EQ(c->relay_map.regions(0).nodes(0).url(), "");
  EXPECT_TRUE(c->default_relay_map);  // the server fills in its STUN ports
}

struct Bad {
  std::string name;
  std::function<void(json&)> mutate;
  std::string expected;  // substring of the error
};

void PrintTo(const Bad& b, std::ostream* os) {
  *os << b.name;
}

class ConfigErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(ConfigErrors, NameFileFieldAndProblem) {
  json j = validConfig();
  GetParam().mutate(j);
  auto c = parseConfig(j.dump(), "/etc/wsa/controld.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().rfind("/etc/wsa/controld.json: ", 0), 0u) << c.error();
  EXPECT_NE(c.error().find(GetParam().expected), std::string::npos) << c.error();
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        Bad{"MissingAdminToken", [](json& j) { j.erase("admin_token"); },
            "admin_token: is required"},
        Bad{"ShortToken", [](json& j) { j["admin_token"] = "short"; },
            "admin_token: must be at least 16"},
        Bad{"UnknownTopField", [](json& j) { j["admn_token"] = "x"; }, "admn_token: unknown field"},
        Bad{"WrongType", [](json& j) { j["users"] = "alice"; }, "users: must be an array"},
        Bad{"UnknownUser", [](json& j) { j["agents"][0]["allowed_users"] = {"bob"}; },
            "agents[0].allowed_users[0]: names user \"bob\""},
        Bad{"DuplicateToken", [](json& j) { j["agents"][0]["token"] = j["users"][0]["token"]; },
            "agents[0].token: is already used"},
        Bad{"NegativeTimeout",
            [](json& j) { j["agents"][0]["manifest"]["scripts"][0]["timeout_seconds"] = -1; },
            "agents[0].manifest.scripts[0].timeout_seconds: must be a non-negative integer"},
        Bad{"ScriptNeverRuns",
            [](json& j) { j["agents"][0]["manifest"]["scripts"][0]["run_on_start"] = false; },
            "agents[0].manifest.scripts[0]: never runs"},
        Bad{"BadCron", [](json& j) { j["agents"][0]["manifest"]["scripts"][0]["cron"] = "* *"; },
            "scripts[0].cron: \"* *\" is not a cron spec"},
        Bad{"MissingMetadataScript",
            [](json& j) { j["agents"][0]["manifest"]["metadata"][0].erase("script"); },
            "agents[0].manifest.metadata[0].script: is required"},
        Bad{"UnknownManifestField", [](json& j) { j["agents"][0]["manifest"]["dir"] = "/"; },
            "agents[0].manifest.dir: unknown field"},
        Bad{"BadHealthcheckUrl",
            [](json& j) {
              j["agents"][0]["manifest"]["apps"][0]["healthcheck"]["url"] = "ftp://x";
            },
            "healthcheck.url: must be an http:// or https:// URL"},
        Bad{"EnvNotString",
            [](json& j) { j["agents"][0]["manifest"]["environment_variables"]["A"] = 1; },
            "environment_variables.A: must be a string"},
        Bad{"DuplicateAgent", [](json& j) { j["agents"].push_back(j["agents"][0]); },
            "agents[1].name: duplicates agent \"dev\""},
        Bad{"BadRelayUrl",
            [](json& j) {
              j["relay_map"] = {
                  {"regions", {{{"region_id", 1}, {"nodes", {{{"url", "tcp://x"}}}}}}}};
            },
            "relay_map.regions[0].nodes[0].url"},
        Bad{"BadStunPort",
            [](json& j) {
              j["relay_map"] = {
                  {"regions", {{{"region_id", 1}, {"nodes", {{{"stun_ports", {3478, 0}}}}}}}}};
            },
            "relay_map.regions[0].nodes[0].stun_ports[1]: must be a port number from 1 to 65535"}),
    [](const ::testing::TestParamInfo<Bad>& p) { return p.param.name; });

TEST(Config, InvalidJsonNamesFile) {
  auto c = parseConfig("{\"admin_token\": ", "x.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().rfind("x.json: not valid JSON", 0), 0u) << c.error();
}

TEST(Config, MissingFileNamesPath) {
  auto c = loadConfig("/nonexistent/controld.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("/nonexistent/controld.json"), std::string::npos);
}

}  // namespace
}  // namespace wsa::controld
