#include "client/options.h"

#include "wsa/common/fs.h"
#include "wsa/common/strings.h"
#include "wsa/common/time.h"

namespace wsa::client {

namespace {

// A port number of at most 5 digits, or -1.
int portNumber(const std::string& s) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  return std::stoi(s);
}

}  // namespace

Outcome<RelayMode> parseRelayMode(const std::string& text) {
  if (text == "auto") return RelayMode::kAuto;
  if (text == "always") return RelayMode::kAlways;
  if (text == "never") return RelayMode::kNever;
  return Exit::usage("--relay: \"" + text + "\" is not auto, always or never");
}

Outcome<ForwardSpec> parseForwardSpec(const std::string& spec) {
  size_t colon = spec.rfind(':');
  int remote = portNumber(colon == std::string::npos ? spec : spec.substr(colon + 1));
  std::string local = colon == std::string::npos ? spec : spec.substr(0, colon);
  if (remote < 1 || remote > 65535) {
    return Exit::usage("forward " + spec + ": the remote port must be 1 to 65535");
  }
  if (int local_port = portNumber(local); local_port >= 0) {
    if (local_port > 65535) {
      return Exit::usage("forward " + spec + ": the local port must be 0 to 65535");
    }
    local = "127.0.0.1:" + local;
  }
  return ForwardSpec{local, static_cast<uint16_t>(remote)};
}

Outcome<ForwardSpec> parseUdpForwardSpec(const std::string& spec, size_t max_flows,
                                         const std::string& idle_timeout) {
  auto f = parseForwardSpec(spec);
  if (!f) return f;
  if (f->listen.rfind("unix:", 0) == 0) {
    return Exit::usage("forward --udp " + spec + ": the local address must be an IP address");
  }
  auto d = parseDuration(idle_timeout);
  if (!d || *d < std::chrono::seconds(1) || *d > std::chrono::hours(1)) {
    return Exit::usage("forward --idle-timeout: \"" + idle_timeout +
                       "\" is not a duration from 1s to 1h");
  }
  f->udp = true;
  f->max_flows = max_flows;
  f->idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  return f;
}

Outcome<SpeedtestOptions> parseSpeedtestOptions(const std::string& direction,
                                                const std::string& duration, bool json) {
  SpeedtestOptions o;
  o.json = json;
  o.config.direction =
      direction == "upload" ? speedtest::Direction::kUpload : speedtest::Direction::kDownload;
  auto d = parseDuration(duration);
  if (!d || *d < std::chrono::seconds(1) || *d > std::chrono::seconds(30)) {
    return Exit::usage("speedtest --time: \"" + duration + "\" is not a duration from 1s to 30s");
  }
  o.config.duration = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  return o;
}

Outcome<std::string> resolveToken(const std::string& token, const std::string& token_file) {
  std::string t = token;
  if (t.empty() && !token_file.empty()) {
    auto text = readFile(token_file, 64 * 1024);
    if (!text) return Exit::usage("--token-file: " + text.error());
    t = std::string(trim(*text));
  }
  if (t.empty()) return Exit::usage("a token is needed (--token-file, --token or WSA_TOKEN)");
  return t;
}

}  // namespace wsa::client
