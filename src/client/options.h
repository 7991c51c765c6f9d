#pragma once
// The client's options and the parsing behind its command-line flags. Each parser fails with
// the message `wsa` prints and exit code 2 (a bad command line).

#include <chrono>
#include <cstdint>
#include <string>

#include "client/exit.h"
#include "wsa/overlay/path_selector.h"
#include "wsa/speedtest/speedtest.h"

namespace wsa::client {

// How WireGuard reaches the agent (--relay): directly over UDP, the relay when no handshake
// completes within a few seconds (auto); the control server's relay only (always); direct only
// (never). The overlay's PathSelector acts on it.
using RelayMode = overlay::RelayMode;

// What reaching one agent takes.
struct SessionOptions {
  std::string url;    // the control server
  std::string token;  // the user's token (never logged)
  std::string agent;  // the agent's name
  RelayMode relay = RelayMode::kAuto;
  std::chrono::seconds connect_timeout{30};
};

// `wsa forward`: the local listener and the agent's overlay port its connections go to. With
// `--udp`, a local UDP socket: each local source address is a flow to the agent's port, within
// the bounds below (at `max_flows` the least recently used flow is closed; a flow idle for
// `idle_timeout` either way is closed).
struct ForwardSpec {
  std::string listen;  // "127.0.0.1:8080", "[::1]:0", "unix:/path" (not for UDP)
  uint16_t remote_port = 0;
  bool udp = false;
  size_t max_flows = 1024;
  std::chrono::milliseconds idle_timeout{60000};
};

// `wsa speedtest`.
struct SpeedtestOptions {
  speedtest::Config config;
  bool json = false;  // results as JSON instead of a table
};

// The agent's speed test on the overlay.
constexpr uint16_t kSpeedtestPort = 3;

// `wsa ping`.
struct PingOptions {
  int count = 5;  // 0: until interrupted
  std::chrono::milliseconds interval{1000};
  bool json = false;
};

// "auto", "always" or "never" (the flag's own check has already run).
Outcome<RelayMode> parseRelayMode(const std::string& text);

// [LOCAL_ADDRESS:]LOCAL_PORT:REMOTE_PORT, or REMOTE_PORT (the same port locally); the local
// address defaults to 127.0.0.1 when only a port is given.
Outcome<ForwardSpec> parseForwardSpec(const std::string& spec);
// The same for `forward --udp` (an IP address, not a unix socket), with --max-flows (1 to
// 65536, checked by the flag) and --idle-timeout, 1 s to 1 h.
Outcome<ForwardSpec> parseUdpForwardSpec(const std::string& spec, size_t max_flows,
                                         const std::string& idle_timeout);

// -d download|upload (already checked by the flag) and -t DURATION, 1 s to 30 s.
Outcome<SpeedtestOptions> parseSpeedtestOptions(const std::string& direction,
                                                const std::string& duration, bool json);

// The token from --token (or WSA_TOKEN), else from --token-file (trimmed); an error when
// neither gives one.
Outcome<std::string> resolveToken(const std::string& token, const std::string& token_file);

}  // namespace wsa::client
