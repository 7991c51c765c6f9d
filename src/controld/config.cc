#include "controld/config.h"

#include <openssl/rand.h>

#include <nlohmann/json.hpp>
#include <set>

#include "wsa/common/fs.h"
#include "wsa/common/uuid.h"

namespace wsa::controld {

using json = nlohmann::json;
namespace v1 = wsa::agent::v1;

namespace {

constexpr size_t kMinTokenLength = 16;

struct ConfigError {
  std::string path;
  std::string message;
};

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw ConfigError{path, message};
}

std::string typeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

// Checks that `j` is an object with only the allowed keys.
void checkObject(const json& j, const std::string& path, const std::set<std::string>& allowed) {
  if (!j.is_object()) fail(path, "must be an object, not " + typeName(j));
  for (const auto& [key, value] : j.items()) {
    if (allowed.count(key) == 0) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(path.empty() ? key : path + "." + key, "unknown field (known fields: " + list + ")");
    }
  }
}

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string getString(const json& o, const std::string& path, const std::string& key, bool required,
                      const std::string& def = "") {
  auto it = o.find(key);
  if (it == o.end()) {
    if (required) fail(join(path, key), "is required");
    return def;
  }
  if (!it->is_string()) fail(join(path, key), "must be a string, not " + typeName(*it));
  return it->get<std::string>();
}

bool getBool(const json& o, const std::string& path, const std::string& key, bool def = false) {
  auto it = o.find(key);
  if (it == o.end()) return def;
  if (!it->is_boolean()) fail(join(path, key), "must be true or false, not " + typeName(*it));
  return it->get<bool>();
}

uint64_t getUint(const json& o, const std::string& path, const std::string& key, uint64_t def,
                 uint64_t max) {
  auto it = o.find(key);
  if (it == o.end()) return def;
  if (!it->is_number_integer() ||
      (it->is_number_integer() && it->get<int64_t>() < 0 && !it->is_number_unsigned())) {
    fail(join(path, key), "must be a non-negative integer, not " + typeName(*it));
  }
  uint64_t v = it->get<uint64_t>();
  if (v > max) fail(join(path, key), "must be at most " + std::to_string(max));
  return v;
}

const json* getArray(const json& o, const std::string& path, const std::string& key) {
  auto it = o.find(key);
  if (it == o.end()) return nullptr;
  if (!it->is_array()) fail(join(path, key), "must be an array, not " + typeName(*it));
  return &*it;
}

bool validName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

void checkToken(const std::string& token, const std::string& path) {
  if (token.size() < kMinTokenLength) {
    fail(path, "must be at least " + std::to_string(kMinTokenLength) +
                   " characters (use `openssl rand -hex 16`)");
  }
  for (char c : token) {
    if (c <= 0x20 || c == 0x7f) fail(path, "must not contain spaces or control characters");
  }
}

void checkCron(const std::string& spec, const std::string& path) {
  int fields = 0;
  bool in = false;
  for (char c : spec) {
    if (c == ' ' || c == '\t') {
      in = false;
    } else if (!in) {
      in = true;
      ++fields;
    }
  }
  if (fields != 5 && fields != 6) {
    fail(path, "\"" + spec +
                   "\" is not a cron spec: want 6 fields (second minute hour day month weekday) "
                   "or 5 (minute hour day month weekday)");
  }
}

void parseRelayMap(const json& j, const std::string& path, overlay::v1::RelayMap* out) {
  checkObject(j, path, {"regions"});
  std::set<int64_t> ids;
  if (const json* regions = getArray(j, path, "regions")) {
    for (size_t i = 0; i < regions->size(); ++i) {
      std::string rp = path + ".regions[" + std::to_string(i) + "]";
      const json& r = (*regions)[i];
      checkObject(r, rp, {"region_id", "region_code", "region_name", "nodes", "avoid"});
      auto* region = out->add_regions();
      auto id = getUint(r, rp, "region_id", 0, 1u << 30);
      if (id == 0) fail(join(rp, "region_id"), "is required and must be positive");
      if (!ids.insert(static_cast<int64_t>(id)).second) {
        fail(join(rp, "region_id"), "duplicates region " + std::to_string(id));
      }
      region->set_region_id(static_cast<int32_t>(id));
      region->set_region_code(getString(r, rp, "region_code", false));
      region->set_region_name(getString(r, rp, "region_name", false));
      region->set_avoid(getBool(r, rp, "avoid"));
      if (const json* nodes = getArray(r, rp, "nodes")) {
        for (size_t k = 0; k < nodes->size(); ++k) {
          std::string np = rp + ".nodes[" + std::to_string(k) + "]";
          checkObject((*nodes)[k], np, {"name", "url", "stun_ports", "stun_host"});
          auto* node = region->add_nodes();
          node->set_name(getString((*nodes)[k], np, "name", false));
          node->set_stun_host(getString((*nodes)[k], np, "stun_host", false));
          if (const json* ports = getArray((*nodes)[k], np, "stun_ports")) {
            for (size_t q = 0; q < ports->size(); ++q) {
              const json& port = (*ports)[q];
              std::string pp = np + ".stun_ports[" + std::to_string(q) + "]";
              if (!port.is_number_unsigned() || port.get<uint64_t>() == 0 ||
                  port.get<uint64_t>() > 65535) {
                fail(pp, "must be a port number from 1 to 65535");
              }
              node->add_stun_ports(port.get<uint32_t>());
            }
          }
          std::string url = getString((*nodes)[k], np, "url", false);
          if (!url.empty() && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0 &&
              url.rfind("unix:", 0) != 0) {
            fail(join(np, "url"),
                 "must start with http://, https:// or unix: (or be empty for "
                 "this server)");
          }
          node->set_url(url);
        }
      }
    }
  }
}

void parseManifest(const json& j, const std::string& path, const std::string& agent_name,
                   v1::Manifest* m) {
  checkObject(j, path,
              {"directory", "environment_variables", "scripts", "metadata", "apps", "motd_path",
               "relay_map", "disable_direct_connections", "vs_code_port_proxy_uri", "secrets"});
  m->set_directory(getString(j, path, "directory", false));
  m->set_motd_path(getString(j, path, "motd_path", false));
  m->set_vs_code_port_proxy_uri(getString(j, path, "vs_code_port_proxy_uri", false));
  m->set_disable_direct_connections(getBool(j, path, "disable_direct_connections"));
  if (auto it = j.find("environment_variables"); it != j.end()) {
    std::string ep = join(path, "environment_variables");
    if (!it->is_object()) fail(ep, "must be an object of strings, not " + typeName(*it));
    for (const auto& [k, v] : it->items()) {
      if (k.empty() || k.find('=') != std::string::npos) {
        fail(ep + "." + k, "is not a valid environment variable name");
      }
      if (!v.is_string()) fail(ep + "." + k, "must be a string, not " + typeName(v));
      (*m->mutable_environment_variables())[k] = v.get<std::string>();
    }
  }
  if (const json* scripts = getArray(j, path, "scripts")) {
    std::set<std::string> names;
    for (size_t i = 0; i < scripts->size(); ++i) {
      std::string sp = path + ".scripts[" + std::to_string(i) + "]";
      const json& s = (*scripts)[i];
      checkObject(s, sp,
                  {"script", "display_name", "run_on_start", "run_on_stop", "cron",
                   "timeout_seconds", "start_blocks_login", "log_path"});
      auto* sc = m->add_scripts();
      sc->set_script(getString(s, sp, "script", true));
      std::string display = getString(s, sp, "display_name", false);
      if (display.empty()) display = "script " + std::to_string(i + 1);
      if (!names.insert(display).second) {
        fail(join(sp, "display_name"), "duplicates another script's name \"" + display + "\"");
      }
      sc->set_display_name(display);
      sc->set_run_on_start(getBool(s, sp, "run_on_start"));
      sc->set_run_on_stop(getBool(s, sp, "run_on_stop"));
      sc->set_cron(getString(s, sp, "cron", false));
      if (!sc->cron().empty()) checkCron(sc->cron(), join(sp, "cron"));
      sc->set_timeout_seconds(
          static_cast<uint32_t>(getUint(s, sp, "timeout_seconds", 0, 7 * 24 * 3600)));
      sc->set_start_blocks_login(getBool(s, sp, "start_blocks_login"));
      sc->set_log_path(getString(s, sp, "log_path", false));
      if (!sc->run_on_start() && !sc->run_on_stop() && sc->cron().empty()) {
        fail(sp, "never runs: set run_on_start, run_on_stop or cron");
      }
      sc->set_id(nameUuid("wsa.script", agent_name + "/" + display));
      sc->set_log_source_id(nameUuid("wsa.log-source", agent_name + "/" + display));
    }
  }
  if (const json* metadata = getArray(j, path, "metadata")) {
    std::set<std::string> keys;
    for (size_t i = 0; i < metadata->size(); ++i) {
      std::string mp = path + ".metadata[" + std::to_string(i) + "]";
      const json& d = (*metadata)[i];
      checkObject(d, mp, {"key", "display_name", "script", "interval_seconds", "timeout_seconds"});
      auto* md = m->add_metadata();
      md->set_key(getString(d, mp, "key", true));
      if (!validName(md->key())) {
        fail(join(mp, "key"), "must be 1-64 letters, digits, '-', '_' or '.'");
      }
      if (!keys.insert(md->key()).second) {
        fail(join(mp, "key"), "duplicates key \"" + md->key() + "\"");
      }
      md->set_display_name(getString(d, mp, "display_name", false));
      md->set_script(getString(d, mp, "script", true));
      md->set_interval_seconds(
          static_cast<uint32_t>(getUint(d, mp, "interval_seconds", 0, 24 * 3600)));
      md->set_timeout_seconds(
          static_cast<uint32_t>(getUint(d, mp, "timeout_seconds", 0, 24 * 3600)));
    }
  }
  if (const json* apps = getArray(j, path, "apps")) {
    std::set<std::string> slugs;
    for (size_t i = 0; i < apps->size(); ++i) {
      std::string ap = path + ".apps[" + std::to_string(i) + "]";
      const json& a = (*apps)[i];
      checkObject(a, ap, {"slug", "display_name", "url", "healthcheck"});
      auto* app = m->add_apps();
      app->set_slug(getString(a, ap, "slug", true));
      if (!validName(app->slug())) {
        fail(join(ap, "slug"), "must be 1-64 letters, digits, '-', '_' or '.'");
      }
      if (!slugs.insert(app->slug()).second) {
        fail(join(ap, "slug"), "duplicates slug \"" + app->slug() + "\"");
      }
      app->set_display_name(getString(a, ap, "display_name", false));
      app->set_url(getString(a, ap, "url", false));
      app->set_id(nameUuid("wsa.app", agent_name + "/" + app->slug()));
      app->set_health(v1::APP_HEALTH_DISABLED);
      if (auto hc = a.find("healthcheck"); hc != a.end()) {
        std::string hp = join(ap, "healthcheck");
        checkObject(*hc, hp, {"url", "interval_seconds", "threshold"});
        auto* h = app->mutable_healthcheck();
        h->set_url(getString(*hc, hp, "url", true));
        if (h->url().rfind("http://", 0) != 0 && h->url().rfind("https://", 0) != 0) {
          fail(join(hp, "url"), "must be an http:// or https:// URL");
        }
        h->set_interval_seconds(
            static_cast<uint32_t>(getUint(*hc, hp, "interval_seconds", 5, 3600)));
        if (h->interval_seconds() == 0) fail(join(hp, "interval_seconds"), "must be positive");
        h->set_threshold(static_cast<uint32_t>(getUint(*hc, hp, "threshold", 3, 1000)));
        app->set_health(v1::APP_HEALTH_INITIALIZING);
      }
    }
  }
  if (const json* secrets = getArray(j, path, "secrets")) {
    for (size_t i = 0; i < secrets->size(); ++i) {
      std::string sp = path + ".secrets[" + std::to_string(i) + "]";
      const json& s = (*secrets)[i];
      checkObject(s, sp, {"env_name", "file_path", "value"});
      auto* sec = m->add_secrets();
      sec->set_env_name(getString(s, sp, "env_name", false));
      sec->set_file_path(getString(s, sp, "file_path", false));
      sec->set_value(getString(s, sp, "value", true));
      if (sec->env_name().empty() && sec->file_path().empty()) {
        fail(sp, "needs env_name or file_path");
      }
    }
  }
  if (auto it = j.find("relay_map"); it != j.end()) {
    parseRelayMap(*it, join(path, "relay_map"), m->mutable_relay_map());
  }
}

Config parseRoot(const json& root) {
  Config c;
  checkObject(root, "",
              {"admin_token", "users", "agents", "log_budget_bytes",
               "stats_report_interval_seconds", "banner", "relay_map"});
  c.admin_token = getString(root, "", "admin_token", true);
  checkToken(c.admin_token, "admin_token");
  c.log_budget_bytes = getUint(root, "", "log_budget_bytes", 1u << 20, uint64_t(1) << 40);
  c.stats_report_interval_seconds =
      static_cast<uint32_t>(getUint(root, "", "stats_report_interval_seconds", 60, 86400));
  if (c.stats_report_interval_seconds == 0) {
    fail("stats_report_interval_seconds", "must be positive");
  }
  std::set<std::string> tokens{c.admin_token};
  std::set<std::string> user_names;
  if (const json* users = getArray(root, "", "users")) {
    for (size_t i = 0; i < users->size(); ++i) {
      std::string up = "users[" + std::to_string(i) + "]";
      checkObject((*users)[i], up, {"name", "token"});
      UserConfig u;
      u.name = getString((*users)[i], up, "name", true);
      if (!validName(u.name))
        fail(join(up, "name"), "must be 1-64 letters, digits, '-', '_' or '.'");
      if (!user_names.insert(u.name).second)
        fail(join(up, "name"), "duplicates user \"" + u.name + "\"");
      u.token = getString((*users)[i], up, "token", true);
      checkToken(u.token, join(up, "token"));
      if (!tokens.insert(u.token).second)
        fail(join(up, "token"), "is already used by another identity");
      c.users.push_back(std::move(u));
    }
  }
  std::set<std::string> agent_names;
  if (const json* agents = getArray(root, "", "agents")) {
    for (size_t i = 0; i < agents->size(); ++i) {
      std::string ap = "agents[" + std::to_string(i) + "]";
      const json& a = (*agents)[i];
      checkObject(a, ap,
                  {"name", "token", "allowed_users", "owner", "workspace_name", "log_budget_bytes",
                   "manifest"});
      AgentConfig ac;
      ac.name = getString(a, ap, "name", true);
      if (!validName(ac.name))
        fail(join(ap, "name"), "must be 1-64 letters, digits, '-', '_' or '.'");
      if (!agent_names.insert(ac.name).second)
        fail(join(ap, "name"), "duplicates agent \"" + ac.name + "\"");
      ac.token = getString(a, ap, "token", true);
      checkToken(ac.token, join(ap, "token"));
      if (!tokens.insert(ac.token).second)
        fail(join(ap, "token"), "is already used by another identity");
      if (const json* allowed = getArray(a, ap, "allowed_users")) {
        for (size_t k = 0; k < allowed->size(); ++k) {
          std::string kp = ap + ".allowed_users[" + std::to_string(k) + "]";
          if (!(*allowed)[k].is_string()) fail(kp, "must be a string");
          std::string name = (*allowed)[k].get<std::string>();
          if (user_names.count(name) == 0)
            fail(kp, "names user \"" + name + "\", which is not in users");
          ac.allowed_users.push_back(name);
        }
      }
      ac.owner = getString(a, ap, "owner", false,
                           ac.allowed_users.empty() ? "" : ac.allowed_users.front());
      ac.workspace_name = getString(a, ap, "workspace_name", false, ac.name);
      ac.log_budget_bytes = getUint(a, ap, "log_budget_bytes", 0, uint64_t(1) << 40);
      if (auto it = a.find("manifest"); it != a.end()) {
        parseManifest(*it, join(ap, "manifest"), ac.name, &ac.manifest);
      }
      c.agents.push_back(std::move(ac));
    }
  }
  if (auto it = root.find("banner"); it != root.end()) {
    checkObject(*it, "banner", {"enabled", "message", "background_color"});
    Banner b;
    b.enabled = getBool(*it, "banner", "enabled");
    b.message = getString(*it, "banner", "message", false);
    b.background_color = getString(*it, "banner", "background_color", false);
    c.banner = b;
  }
  if (auto it = root.find("relay_map"); it != root.end()) {
    parseRelayMap(*it, "relay_map", &c.relay_map);
  } else {
    c.default_relay_map = true;
    auto* region = c.relay_map.add_regions();
    region->set_region_id(1);
    region->set_region_code("controld");
    region->set_region_name("Control server relay");
    region->add_nodes()->set_name("controld");
  }
  return c;
}

std::string randomToken() {
  unsigned char b[16];
  RAND_bytes(b, sizeof(b));
  std::string out;
  char buf[3];
  for (unsigned char c : b) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    out += buf;
  }
  return out;
}

}  // namespace

const AgentConfig* Config::findAgent(const std::string& name) const {
  for (const auto& a : agents) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

Result<Config> parseConfig(const std::string& text, const std::string& source) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return makeError(source + ": not valid JSON: " + e.what());
  }
  try {
    return parseRoot(root);
  } catch (const ConfigError& e) {
    return makeError(source + ": " + (e.path.empty() ? "" : e.path + ": ") + e.message);
  } catch (const json::exception& e) {
    return makeError(source + ": " + e.what());
  }
}

Result<Config> loadConfig(const std::string& path) {
  auto text = readFile(path, 16u << 20);
  if (!text) return makeError("config " + text.error());
  return parseConfig(*text, path);
}

std::string exampleConfig() {
  json j = {{"admin_token", randomToken()},
            {"users", json::array({{{"name", "alice"}, {"token", randomToken()}}})},
            {"log_budget_bytes", 1048576},
            {"stats_report_interval_seconds", 60},
            {"banner",
             {{"enabled", true},
              {"message", "Welcome to the example workspace."},
              {"background_color", "#004488"}}},
            {"agents",
             json::array({{
                 {"name", "dev"},
                 {"token", randomToken()},
                 {"allowed_users", json::array({"alice"})},
                 {"manifest",
                  {{"directory", "~"},
                   {"environment_variables", {{"EDITOR", "vi"}, {"WORKSPACE_HOME", "$HOME"}}},
                   {"motd_path", "/etc/motd"},
                   {"scripts",
                    json::array({{{"display_name", "setup"},
                                  {"script", "echo \"setting up $(hostname)\"; mkdir -p ~/.cache"},
                                  {"run_on_start", true},
                                  {"start_blocks_login", true},
                                  {"timeout_seconds", 300}},
                                 {{"display_name", "save-state"},
                                  {"script", "echo \"saving state\""},
                                  {"run_on_stop", true},
                                  {"timeout_seconds", 60}},
                                 {{"display_name", "heartbeat"},
                                  {"script", "date -u +%FT%TZ"},
                                  {"cron", "0 */5 * * * *"}}})},
                   {"metadata", json::array({{{"key", "load"},
                                              {"display_name", "Load average"},
                                              {"script", "cut -d' ' -f1-3 /proc/loadavg"},
                                              {"interval_seconds", 10},
                                              {"timeout_seconds", 5}},
                                             {{"key", "disk"},
                                              {"display_name", "Home disk usage"},
                                              {"script", "df -h ~ | tail -1 | awk '{print $5}'"},
                                              {"interval_seconds", 60}}})},
                   {"apps", json::array({{{"slug", "metrics"},
                                          {"display_name", "Agent metrics"},
                                          {"url", "http://127.0.0.1:2112/metrics"},
                                          {"healthcheck",
                                           {{"url", "http://127.0.0.1:2112/metrics"},
                                            {"interval_seconds", 5},
                                            {"threshold", 3}}}}})}}},
             }})}};
  return j.dump(2) + "\n";
}

}  // namespace wsa::controld
