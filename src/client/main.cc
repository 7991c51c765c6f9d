// wsa: the client CLI. It joins the overlay as a peer of one workspace agent — its own
// WireGuard engine and userspace TCP/IP stack, no privileges — and connects to a port of the
// agent:
//
//   wsa --url URL --token-file FILE proxy AGENT PORT
//       stdin/stdout joined to AGENT's overlay PORT: an ssh ProxyCommand
//       (ssh -o ProxyCommand='wsa --url … proxy %h 22' user@dev)
//   wsa --url URL --token-file FILE forward [--udp] AGENT [ADDR:]LOCAL:REMOTE
//       a local listener whose connections go to AGENT's overlay port REMOTE (--udp: a local
//       UDP socket, each source address a flow to REMOTE)
//   wsa --url URL --token-file FILE speedtest AGENT [-d download|upload] [-t 5s] [--json]
//       throughput to the agent's speed test (overlay port 3), over the path in use
//   wsa --url URL --token-file FILE ping AGENT [-c N] [-i SECONDS] [--json]
//       path probes to the agent: the path each takes (direct or relay) and its latency
//   wsa --url URL --token-file FILE netcheck [--json]
//       what this network allows: reflexive address, NAT mapping, latency per relay region
//
// This file is the command line only: the session to the agent and the subcommands are the
// wsa_client library (src/client/session.h, commands.h).

#include "client/commands.h"
#include "client/options.h"
#include "client/session.h"
#include "wsa/common/cli_parse.h"
#include "wsa/common/logging.h"
#include "wsa/version.h"

namespace {

using namespace wsa::client;

// What the command line asked for, as the flags gave it.
struct Flags {
  std::string url, token, token_file, level = "warn", relay = "auto";
  int timeout = 30;
  std::string agent;
  int port = 22;
  std::string forward_spec;
  bool udp = false;
  size_t max_flows = 1024;
  std::string idle_timeout = "60s";
  std::string direction = "download", duration = "5s";
  bool json = false;
  int count = 5;
  double interval = 1.0;
};

void addGlobalFlags(CLI::App& app, Flags& f) {
  app.add_option("--url", f.url, "Control server URL (http://, https://, unix:)")
      ->envname("WSA_URL")
      ->required();
  app.add_option("--token", f.token, "User token (prefer --token-file)")->envname("WSA_TOKEN");
  app.add_option("--token-file", f.token_file, "File holding the user token")
      ->envname("WSA_TOKEN_FILE");
  app.add_option("--log-level", f.level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_option("--relay", f.relay,
                 "auto: the relay at once, a direct UDP path as soon as one is found; always "
                 "(relay only, no probes); never (direct only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_option("--connect-timeout", f.timeout, "Seconds to reach the agent")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));
}

struct Subcommands {
  CLI::App* proxy;
  CLI::App* forward;
  CLI::App* speedtest;
  CLI::App* ping;
  CLI::App* netcheck;
};

Subcommands addSubcommands(CLI::App& app, Flags& f) {
  Subcommands s{};
  s.proxy = app.add_subcommand(
      "proxy", "Join stdin/stdout to a TCP port of the agent (an ssh ProxyCommand)");
  s.proxy->add_option("agent", f.agent, "Agent name")->required();
  s.proxy->add_option("port", f.port, "Overlay TCP port (22: SSH)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  s.forward = app.add_subcommand(
      "forward", "Forward a local TCP (or UDP) port to a port of the agent until interrupted");
  s.forward->add_option("agent", f.agent, "Agent name")->required();
  s.forward
      ->add_option("ports", f.forward_spec,
                   "[LOCAL_ADDRESS:]LOCAL_PORT:REMOTE_PORT, or REMOTE_PORT (same port "
                   "locally); the local address defaults to 127.0.0.1")
      ->required();
  s.forward->add_flag("--udp", f.udp, "Forward UDP: each local source address is a flow");
  s.forward->add_option("--max-flows", f.max_flows, "UDP flows at once (the oldest goes)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  s.forward->add_option("--idle-timeout", f.idle_timeout, "A UDP flow idle this long is closed")
      ->capture_default_str();
  s.speedtest = app.add_subcommand("speedtest",
                                   "Measure throughput to the agent's speed test (overlay port 3)");
  s.speedtest->add_option("agent", f.agent, "Agent name")->required();
  s.speedtest->add_option("-d,--direction", f.direction, "download (agent to you) or upload")
      ->capture_default_str()
      ->check(CLI::IsMember({"download", "upload"}));
  s.speedtest->add_option("-t,--time", f.duration, "How long to measure (1s to 30s)")
      ->capture_default_str();
  s.speedtest->add_flag("--json", f.json, "Print the results as JSON");
  s.ping = app.add_subcommand(
      "ping", "Probe the path to the agent: direct or relayed, and the round trip of each probe");
  s.ping->add_option("agent", f.agent, "Agent name")->required();
  s.ping->add_option("-c,--count", f.count, "Probes to send (0: until interrupted)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  s.ping->add_option("-i,--interval", f.interval, "Seconds between probes (0.05 to 60)")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 60.0));
  s.ping->add_flag("--json", f.json, "One JSON object per probe");
  s.netcheck = app.add_subcommand(
      "netcheck", "Report this network's NAT (STUN): reflexive address, mapping, region latencies");
  s.netcheck->add_flag("--json", f.json, "Print the report as JSON");
  app.require_subcommand(1);
  return s;
}

// Connects and runs the chosen subcommand.
int run(const Flags& f, const Subcommands& sub) {
  std::optional<SpeedtestOptions> speed;
  std::optional<ForwardSpec> forward;
  if (sub.speedtest->parsed()) {
    auto o = parseSpeedtestOptions(f.direction, f.duration, f.json);
    if (!o) return report(o.exit());
    speed = *o;
  }
  if (sub.forward->parsed()) {
    auto spec = f.udp ? parseUdpForwardSpec(f.forward_spec, f.max_flows, f.idle_timeout)
                      : parseForwardSpec(f.forward_spec);
    if (!spec) return report(spec.exit());
    forward = *spec;
  }
  auto token = resolveToken(f.token, f.token_file);
  if (!token) return report(token.exit());
  auto relay = parseRelayMode(f.relay);
  if (!relay) return report(relay.exit());
  wsa::logging::Options lopts;
  lopts.level = f.level;
  if (auto st = wsa::logging::init(lopts); !st) return report(Exit::usage(st.error()));
  if (sub.netcheck->parsed()) {
    int code = report(runNetcheck(f.url, *token, f.json));
    wsa::logging::flush();
    return code;
  }
  auto session = Session::connect(
      SessionOptions{f.url, *token, f.agent, *relay, std::chrono::seconds(f.timeout)});
  if (!session) return report(session.exit());
  PingOptions ping{f.count, std::chrono::milliseconds(static_cast<int64_t>(f.interval * 1000)),
                   f.json};
  Exit exit = speed                ? runSpeedtest(**session, *speed)
              : forward            ? runForward(**session, *forward)
              : sub.ping->parsed() ? runPing(**session, ping)
                                   : runProxy(**session, static_cast<uint16_t>(f.port));
  int code = report(exit);
  wsa::logging::flush();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsa " WSA_VERSION " — reach a workspace through the overlay"};
  Flags flags;
  addGlobalFlags(app, flags);
  Subcommands sub = addSubcommands(app, flags);
  WSA_CLI_PARSE(app, argc, argv);
  return run(flags, sub);
}
