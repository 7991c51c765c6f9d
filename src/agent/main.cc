// agent: the workspace agent daemon.

#include <signal.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "agent/agent.h"
#include "agent/grpc_api.h"
#include "agent/http_get.h"
#include "agent/local_api.h"
#include "agent/metrics.h"
#include "agent/reaper.h"
#include "agent/services.h"
#include "wsa/common/cli_parse.h"
#include "wsa/common/fs.h"
#include "wsa/common/logging.h"
#include "wsa/common/strings.h"
#include "wsa/common/worker.h"
#include "wsa/control/url.h"
#include "wsa/http/server.h"
#include "wsa/version.h"

namespace {

std::string defaultAgentDataDir() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x != '\0') {
    return std::string(x) + "/wsa-agent";
  }
  return wsa::homeDirectory() + "/.local/state/wsa-agent";
}

std::string tempDir() {
  const char* t = std::getenv("TMPDIR");
  return t != nullptr && *t != '\0' ? t : "/tmp";
}

// CLI11 validator for Go-style durations.
struct DurationOption {
  std::string text;
  std::chrono::nanoseconds value;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace wsa;
  CLI::App app{"agent " WSA_VERSION
               " — the wsa workspace agent.\nKeeps a connection to the control server, runs the "
               "workspace's scripts, reports its state, and serves the workspace.\nEvery flag can "
               "also be set through the environment variable shown."};
  std::string url, token, token_file, ca_file;
  std::string log_dir = tempDir(), script_data_dir = tempDir();
  std::string log_level = "info", log_format = "text";
  std::string prometheus_address = "127.0.0.1:2112", debug_address = "127.0.0.1:2113";
  std::string ssh_max_timeout = "72h";
  std::string subsystems;
  std::string banner_refresh = "2m", metadata_interval = "1s", script_wait_delay = "10s";
  std::string stop_scripts_timeout = "10m", flush_timeout = "5s", backoff_cap = "10s";
  std::string ready_file;
  std::string data_dir = defaultAgentDataDir();
  std::string ssh_listen, ssh_host_key,
      ssh_authorized_keys = homeDirectory() + "/.ssh/authorized_keys";
  bool block_file_transfer = false, block_local_forwarding = false,
       block_reverse_forwarding = false;
  bool block_agent_forwarding = false, block_x11_forwarding = false;
  std::string pty_listen, pty_timeout = "5m", speedtest_listen, api_listen;
  bool allow_remote_unauthenticated = false;
  bool no_overlay = false;
  uint16_t overlay_port = 0;
  int overlay_keepalive = 20;
  std::string overlay_config_socket;
  std::vector<std::string> overlay_endpoints;
  bool no_reap = false;
  bool prio = false;
  std::optional<int> oom_score, nice_score;
  size_t log_queue_bytes = 1u << 20;

  app.add_option("--url", url,
                 "Control server URL: http://host:port, https://host:port or unix:/path")
      ->envname("WSA_AGENT_URL");
  app.add_option("--token", token,
                 "Agent token (prefer --token-file: a flag shows in the process list)")
      ->envname("WSA_AGENT_TOKEN");
  app.add_option("--token-file", token_file, "File holding the agent token (re-read on every call)")
      ->envname("WSA_AGENT_TOKEN_FILE");
  app.add_option("--ca-file", ca_file,
                 "PEM CA certificates to trust for https URLs (default: system roots)")
      ->envname("WSA_AGENT_CA_FILE");
  app.add_option("--log-dir", log_dir, "Directory for the agent log and script logs")
      ->capture_default_str()
      ->envname("WSA_AGENT_LOG_DIR");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->capture_default_str()
      ->envname("WSA_AGENT_LOG_LEVEL");
  app.add_option("--log-format", log_format, "text or json (stderr and the log file)")
      ->capture_default_str()
      ->envname("WSA_AGENT_LOG_FORMAT");
  app.add_option("--script-data-dir", script_data_dir,
                 "Directory for script data (wsa-script-data/ with bin/ and one folder per script)")
      ->capture_default_str()
      ->envname("WSA_AGENT_SCRIPT_DATA_DIR");
  app.add_option("--prometheus-address", prometheus_address,
                 "Where to serve Prometheus metrics (loopback; empty disables)")
      ->capture_default_str()
      ->envname("WSA_AGENT_PROMETHEUS_ADDRESS");
  app.add_option("--debug-address", debug_address,
                 "Where to serve the debug endpoints (loopback; empty disables)")
      ->capture_default_str()
      ->envname("WSA_AGENT_DEBUG_ADDRESS");
  app.add_option("--ssh-max-timeout", ssh_max_timeout,
                 "SSH sessions: keepalive interval is a third of this (for the SSH server)")
      ->capture_default_str()
      ->envname("WSA_AGENT_SSH_MAX_TIMEOUT");
  app.add_option("--subsystem", subsystems,
                 "Comma-separated subsystems to report: envbox, envbuilder, exectrace")
      ->envname("WSA_AGENT_SUBSYSTEM");
  app.add_flag("--proc-prio-mgmt", prio,
               "Give child processes a lower priority than the agent (nice +5, OOM score 998)")
      ->envname("WSA_PROC_PRIO_MGMT");
  app.add_option("--proc-oom-score", oom_score,
                 "OOM score for child processes (with --proc-prio-mgmt)")
      ->envname("WSA_PROC_OOM_SCORE");
  app.add_option("--proc-nice-score", nice_score,
                 "Niceness for child processes (with --proc-prio-mgmt)")
      ->envname("WSA_PROC_NICE_SCORE");
  app.add_option("--banner-refresh-interval", banner_refresh, "How often to refresh the banners")
      ->capture_default_str()
      ->envname("WSA_AGENT_BANNER_REFRESH_INTERVAL");
  app.add_option("--metadata-interval", metadata_interval,
                 "Metadata tick: collection and reporting cadence")
      ->capture_default_str()
      ->envname("WSA_AGENT_METADATA_INTERVAL");
  app.add_option(
         "--script-wait-delay", script_wait_delay,
         "After a script exits, how long to wait for background processes holding its output")
      ->capture_default_str()
      ->envname("WSA_AGENT_SCRIPT_WAIT_DELAY");
  app.add_option("--stop-scripts-timeout", stop_scripts_timeout,
                 "Upper bound on running stop scripts at shutdown")
      ->capture_default_str()
      ->envname("WSA_AGENT_STOP_SCRIPTS_TIMEOUT");
  app.add_option("--shutdown-flush-timeout", flush_timeout,
                 "At shutdown, how long to wait for the final state and logs to be delivered")
      ->capture_default_str()
      ->envname("WSA_AGENT_SHUTDOWN_FLUSH_TIMEOUT");
  app.add_option("--backoff-cap", backoff_cap, "Longest wait between reconnection attempts")
      ->capture_default_str()
      ->envname("WSA_AGENT_BACKOFF_CAP");
  app.add_option("--log-queue-bytes", log_queue_bytes, "Bound on script output queued for sending")
      ->capture_default_str()
      ->envname("WSA_AGENT_LOG_QUEUE_BYTES");
  app.add_option("--data-dir", data_dir,
                 "Directory for the agent's persistent state (SSH host key)")
      ->capture_default_str()
      ->envname("WSA_AGENT_DATA_DIR");
  app.add_option("--ssh-listen", ssh_listen,
                 "Also serve SSH on this TCP address (off by default; the overlay serves ports 1 "
                 "and 22). Public-key authentication is required here")
      ->envname("WSA_AGENT_SSH_LISTEN");
  app.add_option("--ssh-host-key", ssh_host_key,
                 "SSH host key file (default <data-dir>/ssh_host_ed25519_key; created once)")
      ->envname("WSA_AGENT_SSH_HOST_KEY");
  app.add_option("--ssh-authorized-keys", ssh_authorized_keys,
                 "OpenSSH authorized_keys file for --ssh-listen (re-read when it changes)")
      ->capture_default_str()
      ->envname("WSA_AGENT_SSH_AUTHORIZED_KEYS");
  app.add_flag("--block-file-transfer", block_file_transfer,
               "Refuse sftp and scp/rsync/nc commands over SSH (exit 65)")
      ->envname("WSA_AGENT_BLOCK_FILE_TRANSFER");
  app.add_flag("--block-local-port-forwarding", block_local_forwarding,
               "Refuse SSH local port forwarding (-L)")
      ->envname("WSA_AGENT_BLOCK_LOCAL_PORT_FORWARDING");
  app.add_flag("--block-reverse-port-forwarding", block_reverse_forwarding,
               "Refuse SSH remote port forwarding (-R)")
      ->envname("WSA_AGENT_BLOCK_REVERSE_PORT_FORWARDING");
  app.add_flag("--block-agent-forwarding", block_agent_forwarding, "Do not forward SSH agents (-A)")
      ->envname("WSA_AGENT_BLOCK_AGENT_FORWARDING");
  app.add_flag("--block-x11-forwarding", block_x11_forwarding, "Do not forward X11 (-X)")
      ->envname("WSA_AGENT_BLOCK_X11_FORWARDING");
  app.add_option("--pty-listen", pty_listen,
                 "Also serve reconnecting PTYs on this address (host:port or unix:/path; off by "
                 "default; the overlay serves port 2). No authentication: loopback or unix only")
      ->envname("WSA_AGENT_PTY_LISTEN");
  app.add_option("--pty-timeout", pty_timeout,
                 "End a reconnecting PTY session after this long with no client attached")
      ->capture_default_str()
      ->envname("WSA_AGENT_PTY_TIMEOUT");
  app.add_option(
         "--speedtest-listen", speedtest_listen,
         "Also serve speed tests on this address (off by default; the overlay serves port 3)")
      ->envname("WSA_AGENT_SPEEDTEST_LISTEN");
  app.add_option("--api-listen", api_listen,
                 "Also serve the agent HTTP API on this address (off by default; the overlay "
                 "serves port 4). No authentication: loopback or unix only")
      ->envname("WSA_AGENT_API_LISTEN");
  app.add_flag("--no-overlay", no_overlay,
               "Do not join the overlay (by default the agent does when the manifest assigns "
               "overlay addresses)")
      ->envname("WSA_AGENT_NO_OVERLAY");
  app.add_option("--overlay-keepalive", overlay_keepalive,
                 "Seconds between probes that keep an idle direct path's NAT mappings open")
      ->capture_default_str()
      ->check(CLI::Range(5, 300));
  app.add_option("--overlay-port", overlay_port, "UDP port of the overlay (0: any)")
      ->capture_default_str()
      ->envname("WSA_AGENT_OVERLAY_PORT");
  app.add_option("--overlay-endpoint", overlay_endpoints,
                 "UDP endpoint to publish to peers, host or host:port (repeatable; default: the "
                 "addresses of this machine's interfaces, loopback and link-local left out)")
      ->envname("WSA_AGENT_OVERLAY_ENDPOINT");
  app.add_option("--overlay-config-socket", overlay_config_socket,
                 "Serve WireGuard's configuration protocol for the overlay on this unix socket "
                 "(`wg show`/`wg set` work on it; peers can be configured statically). Off by "
                 "default")
      ->envname("WSA_AGENT_OVERLAY_CONFIG_SOCKET");
  app.add_flag("--allow-remote-unauthenticated", allow_remote_unauthenticated,
               "Let --pty-listen and --api-listen use non-loopback addresses (anyone who can "
               "reach them gets a shell or the API; only behind your own access control)")
      ->envname("WSA_AGENT_ALLOW_REMOTE_UNAUTHENTICATED");
  app.add_flag("--no-reap", no_reap, "Do not act as a zombie reaper when running as PID 1");
  app.add_option("--ready-file", ready_file,
                 "Write the bound addresses and the pid here as JSON once listening")
      ->envname("WSA_AGENT_READY_FILE");
  app.set_version_flag("--version", WSA_VERSION);
  WSA_CLI_PARSE(app, argc, argv);

  if (int code = agent::maybeRunReaper(argc, argv, no_reap); code >= 0) return code;

  auto fail = [](const std::string& msg) {
    std::cerr << "agent: " << msg << "\n";
    return 2;
  };
  if (url.empty()) return fail("--url (or WSA_AGENT_URL) is required");
  auto parsed_url = control::parseControlUrl(url);
  if (!parsed_url) return fail(parsed_url.error());
  if (!token.empty() && !token_file.empty()) return fail("give --token or --token-file, not both");
  if (token.empty() && token_file.empty()) {
    return fail("a token is required: --token-file FILE (or WSA_AGENT_TOKEN_FILE), or --token");
  }
  if (!token_file.empty()) {
    auto t = readFile(token_file, 64 * 1024);
    if (!t) return fail("--token-file: " + t.error());
    if (trim(*t).empty()) return fail("--token-file: " + token_file + " is empty");
  }
  auto dur = [&](const std::string& name, const std::string& text) -> std::optional<Duration> {
    auto d = parseDuration(text);
    if (!d) {
      std::cerr << "agent: " << name << ": \"" << text
                << "\" is not a duration (examples: 500ms, 10s, 5m, 72h)\n";
      return std::nullopt;
    }
    return std::chrono::duration_cast<Duration>(*d);
  };
  agent::AgentOptions opts;
  opts.version = WSA_VERSION;
  opts.log_dir = log_dir;
  opts.script_data_dir = script_data_dir;
  opts.manage_priority = prio;
  opts.child_oom_score = oom_score;
  opts.child_nice = nice_score;
  opts.log_queue_bytes = log_queue_bytes;
  auto d1 = dur("--banner-refresh-interval", banner_refresh);
  auto d2 = dur("--metadata-interval", metadata_interval);
  auto d3 = dur("--script-wait-delay", script_wait_delay);
  auto d4 = dur("--stop-scripts-timeout", stop_scripts_timeout);
  auto d5 = dur("--shutdown-flush-timeout", flush_timeout);
  auto d6 = dur("--backoff-cap", backoff_cap);
  auto d7 = dur("--ssh-max-timeout", ssh_max_timeout);
  auto d8 = dur("--pty-timeout", pty_timeout);
  if (!d1 || !d2 || !d3 || !d4 || !d5 || !d6 || !d7 || !d8) return 2;
  if (*d8 <= Duration::zero()) return fail("--pty-timeout: must be positive");
  opts.banner_refresh = *d1;
  opts.metadata_tick = *d2;
  opts.script_wait_delay = *d3;
  opts.stop_scripts_timeout = *d4;
  opts.flush_timeout = *d5;
  opts.backoff_cap = *d6;
  for (const auto& s : split(subsystems, ',')) {
    std::string n = toLower(std::string(trim(s)));
    if (n.empty()) continue;
    if (n == "envbox") {
      opts.subsystems.push_back(agent::v1::SUBSYSTEM_ENVBOX);
    } else if (n == "envbuilder") {
      opts.subsystems.push_back(agent::v1::SUBSYSTEM_ENVBUILDER);
    } else if (n == "exectrace") {
      opts.subsystems.push_back(agent::v1::SUBSYSTEM_EXECTRACE);
    } else {
      return fail("--subsystem: unknown subsystem \"" + n +
                  "\" (want envbox, envbuilder, exectrace)");
    }
  }

  if (auto st = makeDirs(log_dir, 0755); !st) return fail("--log-dir: " + st.error());
  logging::Options lopts;
  lopts.level = log_level;
  auto fmt = logging::parseFormat(log_format);
  if (!fmt) return fail("--log-format: " + fmt.error());
  lopts.format = *fmt;
  std::string log_file = log_dir + "/wsa-agent.log";
  lopts.file = log_file;
  if (auto st = logging::init(lopts); !st) return fail(st.error());
  auto log = logging::get("main");

  ::signal(SIGPIPE, SIG_IGN);
  asio::io_context io;
  auto clock = makeLoopClock(io);
  agent::AgentMetrics metrics;

  agent::GrpcApiOptions gopts;
  gopts.channel.ca_file = ca_file;
  if (!token_file.empty()) {
    gopts.token = [token_file, cached = std::make_shared<std::string>()]() {
      auto t = readFile(token_file, 64 * 1024);
      if (t) *cached = std::string(trim(*t));
      return *cached;
    };
  } else {
    gopts.token = [token] { return token; };
  }
  auto factory = agent::makeGrpcApiFactory(io, *parsed_url, std::move(gopts));
  if (!factory) return fail(factory.error());
  agent::HealthProbe probe = [&io](const std::string& u, std::chrono::milliseconds timeout,
                                   std::function<void(Result<int>)> done) {
    return agent::httpGet(io, u, timeout, std::move(done));
  };
  agent::Agent a(io, *clock, opts, std::move(*factory), metrics, probe);

  Worker worker("agent-worker", 64);
  metrics.addCollector([&worker](wsa::metrics::Families& out) {
    out.counter("wsa_agent_worker_refused_total",
                "Blocking jobs refused because the worker's queue was full", worker.refused());
    out.gauge("wsa_agent_worker_queue_depth", "Blocking jobs waiting for the agent's worker thread",
              worker.depth());
  });
  agent::ServicesConfig scfg;
  auto& sopts = scfg.ssh;
  sopts.host_key_path = ssh_host_key.empty() ? data_dir + "/ssh_host_ed25519_key" : ssh_host_key;
  sopts.authorized_keys_path = ssh_authorized_keys;
  sopts.require_auth = true;
  sopts.block_file_transfer = block_file_transfer;
  sopts.block_local_port_forwarding = block_local_forwarding;
  sopts.block_reverse_port_forwarding = block_reverse_forwarding;
  sopts.block_agent_forwarding = block_agent_forwarding;
  sopts.block_x11_forwarding = block_x11_forwarding;
  sopts.max_timeout = std::chrono::duration_cast<std::chrono::seconds>(*d7);
  scfg.ssh_listen = ssh_listen;
  scfg.rpty.idle_timeout = *d8;
  scfg.pty_listen = pty_listen;
  scfg.speedtest_listen = speedtest_listen;
  scfg.api_listen = api_listen;
  scfg.allow_remote_unauthenticated = allow_remote_unauthenticated;
  scfg.overlay.enabled = !no_overlay;
  scfg.overlay.udp_port = overlay_port;
  scfg.overlay.keepalive = std::chrono::seconds(overlay_keepalive);
  scfg.overlay.config_socket = overlay_config_socket;
  scfg.overlay.endpoints = overlay_endpoints;
  if (parsed_url->scheme != control::ControlUrl::Scheme::kUnix) {
    scfg.overlay.control_host = parsed_url->host;
  }
  scfg.log_file = log_file;
  auto services = agent::Services::create(io, *clock, a, metrics, worker, std::move(scfg));
  if (!services) return fail(services.error());
  a.addExtension(services->get());

  std::unique_ptr<http::Server> metrics_server, debug_server;
  std::string metrics_bound, debug_bound;
  if (!prometheus_address.empty()) {
    metrics_server = std::make_unique<http::Server>(io, agent::makeMetricsRouter(metrics));
    auto b = metrics_server->listen(prometheus_address);
    if (!b) {
      log->error("--prometheus-address: {}", b.error());
      return 1;
    }
    metrics_bound = *b;
    log->info("serving Prometheus metrics on http://{}/metrics", *b);
  }
  if (!debug_address.empty()) {
    debug_server = std::make_unique<http::Server>(
        io, agent::makeDebugRouter(a, metrics, log_file, &worker,
                                   [svc = services->get()] { return svc->debugOverlay(); }));
    auto b = debug_server->listen(debug_address);
    if (!b) {
      log->error("--debug-address: {}", b.error());
      return 1;
    }
    debug_bound = *b;
    log->info("serving debug endpoints on http://{}/debug/state", *b);
  }
  std::set<uint16_t> own_ports;
  for (const std::string* b : {&metrics_bound, &debug_bound}) {
    if (auto colon = b->rfind(':'); colon != std::string::npos && b->rfind("unix:", 0) != 0) {
      own_ports.insert(static_cast<uint16_t>(std::stoi(b->substr(colon + 1))));
    }
  }
  auto bound = (*services)->listen(own_ports);
  if (!bound) return fail(bound.error());
  if (!ready_file.empty()) {
    nlohmann::json j = {{"prometheus", metrics_bound}, {"debug", debug_bound},
                        {"ssh", bound->ssh},           {"ssh_host_key", bound->ssh_host_key},
                        {"pty", bound->pty},           {"speedtest", bound->speedtest},
                        {"api", bound->api},           {"pid", ::getpid()}};
    if (auto st = writeFileAtomic(ready_file, j.dump() + "\n"); !st) {
      return fail("--ready-file: " + st.error());
    }
  }
  log->info("control server {} ({})", parsed_url->text,
            token_file.empty() ? "token from flag or environment" : "token file " + token_file);

  int exit_code = 0;
  a.on_exit = [&](int code) {
    exit_code = code;
    (*services)->shutdown();
    if (metrics_server) metrics_server->stop();
    if (debug_server) debug_server->stop();
    io.stop();
  };
  asio::signal_set signals(io, SIGTERM, SIGINT);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](std::error_code ec, int sig) {
      if (ec) return;
      a.onSignal(sig);
      wait_signal();
    });
  };
  wait_signal();
  ::signal(SIGHUP, SIG_IGN);
  a.start();
  io.run();
  // Calls still in flight complete on gRPC threads: wait for them (bounded), deliver their
  // completions, and only then destroy the agent and the loop.
  a.drainRpc(std::chrono::seconds(5));
  io.restart();
  io.poll();
  logging::flush();
  return exit_code;
}
