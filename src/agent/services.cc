#include "agent/services.h"

#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>

#include "agent/http_api.h"
#include "agent/metrics.h"
#include "wsa/common/logging.h"
#include "wsa/exec/command.h"
#include "wsa/http/server.h"
#include "wsa/net/address.h"
#include "wsa/net/splice.h"
#include "wsa/overlay/discovery.h"

namespace wsa::agent {

namespace {

uint16_t portOf(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<uint16_t>(std::stoi(hostport.substr(colon + 1)));
}

// Services without authentication may listen on loopback or a unix socket only, unless the
// operator says otherwise.
Status checkLocalOnly(const std::string& flag, const std::string& address, bool allowed) {
  if (allowed) return {};
  auto a = net::parseListenAddress(address);
  if (!a) return makeError(flag + ": " + a.error());
  if (a->is_unix || a->host == "localhost") return {};
  std::error_code ec;
  auto ip = asio::ip::make_address(a->host, ec);
  if (!a->host.empty() && !ec && ip.is_loopback()) return {};
  return makeError(
      flag + ": \"" + address +
      "\" is not a loopback address; this service has no authentication, so it "
      "listens only on 127.0.0.1, ::1 or a unix socket (--allow-remote-unauthenticated "
      "overrides this)");
}

}  // namespace

Services::Services(asio::io_context& io, Clock& clock, ServiceHost& host, AgentMetrics& metrics,
                   Worker& worker, ServicesConfig config)
    : io_(io),
      clock_(clock),
      host_(host),
      metrics_(metrics),
      worker_(worker),
      config_(std::move(config)),
      hidden_ports_(std::make_shared<std::set<uint16_t>>()) {}

Services::~Services() {
  shutdown();
}

Result<std::unique_ptr<Services>> Services::create(asio::io_context& io, Clock& clock,
                                                   ServiceHost& host, AgentMetrics& metrics,
                                                   Worker& worker, ServicesConfig config) {
  std::unique_ptr<Services> s(new Services(io, clock, host, metrics, worker, std::move(config)));
  Services* self = s.get();

  // SSH.
  ssh::SshServer::Hooks shooks;
  shooks.post = [&io](std::function<void()> fn) { asio::post(io, std::move(fn)); };
  shooks.report = [&host](v1::ReportConnectionRequest r) { host.reportConnection(std::move(r)); };
  auto ssh_server = ssh::SshServer::create(io, s->config_.ssh, shooks);
  if (!ssh_server) return makeError("SSH server: " + ssh_server.error());
  s->ssh_ = std::move(*ssh_server);

  // Reconnecting PTY.
  rpty::Hooks rhooks;
  rhooks.command = [self](const std::string& command, term::PtySize size) {
    return self->ptyCommand(command, size);
  };
  rhooks.report = [&host](v1::ReportConnectionRequest r) { host.reportConnection(std::move(r)); };
  rhooks.error = [&metrics](const std::string& what) { ++metrics.rpty_errors[what]; };
  rhooks.connection_opened = [&metrics] { ++metrics.rpty_connections; };
  s->rpty_ = std::make_unique<rpty::Server>(io, clock, s->config_.rpty, std::move(rhooks));

  // Speed test.
  speedtest::ServerHooks thooks;
  thooks.done = [&metrics](speedtest::Direction d, bool ok, uint64_t bytes) {
    std::string dir = speedtest::directionName(d);
    ++metrics.speedtests[{dir, ok ? "ok" : "error"}];
    metrics.speedtest_bytes[dir] += bytes;
  };
  s->speedtest_ = std::make_unique<speedtest::Server>(io, clock, s->config_.speedtest, thooks);

  // HTTP API.
  HttpApiOptions aopts;
  aopts.hidden_ports = s->hidden_ports_;
  auto router = makeHttpApiRouter(
      io, clock, [&host] { return host.debugManifest(); }, metrics, s->config_.log_file, worker,
      aopts);
  http::ServerOptions hopts;
  hopts.on_response = [router, &metrics](const http::Request& req, int status,
                                         std::chrono::nanoseconds) {
    std::string route = router.matchPattern(req);
    ++metrics.api_requests[{route.empty() ? "unknown" : route, std::to_string(status)}];
  };
  s->api_ = std::make_unique<http::Server>(io, router, hopts);

  // Context for sessions, and metrics.
  s->publishContext();
  metrics.addCollector([self](metrics::Families& out) { self->collectMetrics(out); });
  return s;
}

std::vector<AgentExtension::ConnectionRoutine> Services::routinesFor(AgentApi& api) {
  // Each control connection coordinates the overlay once it is up.
  auto coordinate = [this, &api]() -> std::shared_ptr<Routine> {
    if (!overlay_ || !host_.manifest()) return nullptr;
    return overlay_->makeCoordinator(api, host_.manifest()->agent_id());
  };
  return {ConnectionRoutine{"coordinate", Behavior::kRemain, coordinate}};
}

void Services::fillStats(v1::Stats* st) {
  auto& c = ssh_->counters();
  st->set_session_count_ssh(c.sessions_ssh);
  st->set_session_count_vscode(c.sessions_vscode);
  st->set_session_count_jetbrains(c.sessions_jetbrains);
  auto rpty_attached = static_cast<int64_t>(rpty_->attached());
  st->set_session_count_reconnecting_pty(rpty_attached);
  int64_t ssh_total = c.sessions_ssh + c.sessions_vscode + c.sessions_jetbrains;
  if (ssh_total > 0) (*st->mutable_connections_by_proto())["ssh"] = ssh_total;
  if (rpty_attached > 0) (*st->mutable_connections_by_proto())["reconnecting_pty"] = rpty_attached;
  if (overlay_) overlay_->fillStats(st);
}

std::string Services::debugOverlay() const {
  return overlay_ ? overlay_->debugState() : "null\n";
}

void Services::collectMetrics(metrics::Families& out) const {
  auto& c = ssh_->counters();
  out.counter("wsa_agent_ssh_sessions_total", "SSH sessions started", c.sessions_total.load());
  out.counter("wsa_agent_ssh_failed_connections_total",
              "SSH connections that failed before a session (key exchange)",
              c.failed_connections.load());
  out.counter("wsa_agent_ssh_sftp_sessions_total", "SFTP sessions started", c.sftp_sessions.load());
  out.gauges("wsa_agent_ssh_sessions", "SSH sessions open now, by type (ssh, vscode, jetbrains)")
      .add(c.sessions_jetbrains.load(), {{"type", "jetbrains"}})
      .add(c.sessions_ssh.load(), {{"type", "ssh"}})
      .add(c.sessions_vscode.load(), {{"type", "vscode"}});
  out.gauge("wsa_agent_ssh_connections", "SSH connections open now", c.connections.load());
  out.gauge("wsa_agent_reconnecting_pty_sessions", "Reconnecting PTY sessions alive now",
            rpty_->sessions());
  out.gauge("wsa_agent_reconnecting_pty_connections",
            "Connections attached to reconnecting PTY sessions now", rpty_->attached());
}

void Services::publishContext() {
  auto ctx = std::make_shared<ssh::SessionContext>();
  ctx->command = host_.commandContext();
  ctx->banners = host_.banners();
  ctx->motd_path = host_.manifest() ? host_.manifest()->motd_path() : "";
  ssh_->setContext(ctx);
  maybeStartOverlay();
}

void Services::maybeStartOverlay() {
  if (overlay_ || overlay_failed_ || !config_.overlay.enabled || !host_.manifest()) return;
  const auto& m = *host_.manifest();
  if (m.overlay_addresses().empty()) return;
  std::vector<std::string> addrs(m.overlay_addresses().begin(), m.overlay_addresses().end());
  OverlayOptions oo = config_.overlay;
  oo.direct = !m.disable_direct_connections();
  auto targets = overlay::stunTargetsFromRelayMap(m.relay_map(), oo.control_host);
  for (const auto& skipped : targets.skipped) {
    logging::get("overlay")->warn("relay map: {}", skipped);
  }
  oo.stun_targets = std::move(targets.targets);
  auto o = Overlay::start(io_, clock_, addrs, oo,
                          [this](uint16_t port, net::ByteStreamPtr s, std::string peer) {
                            serveOverlay(port, std::move(s), std::move(peer));
                          });
  if (!o) {
    // The agent keeps working without the overlay; the reason is in the log.
    overlay_failed_ = true;
    logging::get("overlay")->error("overlay not started: {}", o.error());
    return;
  }
  overlay_ = std::move(*o);
  std::weak_ptr<Overlay> weak = overlay_;
  metrics_.addCollector([weak](metrics::Families& out) {
    if (auto live = weak.lock()) live->collectMetrics(out);
  });
}

void Services::serveOverlay(uint16_t port, net::ByteStreamPtr stream, std::string peer) {
  if (!accepting_) {
    stream->abort();
    return;
  }
  if (port == kOverlaySshPorts[0] || port == kOverlaySshPorts[1]) {
    // libssh serves a file descriptor on its own thread.
    auto fd = net::spliceToFd(io_, std::move(stream));
    if (!fd) {
      logging::get("overlay")->warn("SSH over the overlay from {}: {}", peer, fd.error());
      return;
    }
    ssh_->serveFd(*fd, std::move(peer), /*from_overlay=*/true);
  } else if (port == kOverlayPtyPort) {
    rpty_->serve(std::move(stream));
  } else if (port == kOverlaySpeedtestPort) {
    speedtest_->serve(std::move(stream));
  } else if (port == kOverlayApiPort) {
    api_->serveStream(std::move(stream));
  } else {
    overlay_->forwardToLoopback(std::move(stream), port);
  }
}

Result<term::ChildSpec> Services::ptyCommand(const std::string& command, term::PtySize size) const {
  auto run =
      command.empty() ? exec::Invocation::loginShell() : exec::Invocation::shellScript(command);
  exec::BuiltCommand cmd = exec::buildCommand(*host_.commandContext(), run);
  rpty::withTerminalEnv(&cmd.env);
  term::ChildSpec spec = term::childSpec(cmd);
  spec.pty = true;
  spec.size = size;
  return spec;
}

Result<BoundServices> Services::listen(const std::set<uint16_t>& own_ports) {
  BoundServices b;
  b.ssh_host_key = ssh_->hostKeyFingerprint();
  auto log = logging::get("main");
  *hidden_ports_ = own_ports;
  if (!config_.ssh_listen.empty()) {
    auto r = ssh_->listen(config_.ssh_listen);
    if (!r) return makeError("--ssh-listen: " + r.error());
    b.ssh = *r;
    log->info("serving SSH on {} (host key {})", *r, b.ssh_host_key);
  }
  for (auto [flag, addr] : {std::pair{"--pty-listen", &config_.pty_listen},
                            std::pair{"--api-listen", &config_.api_listen}}) {
    if (addr->empty()) continue;
    if (auto st = checkLocalOnly(flag, *addr, config_.allow_remote_unauthenticated); !st) {
      return makeError(st.error());
    }
  }
  if (!config_.pty_listen.empty()) {
    auto r = rpty_->listen(config_.pty_listen);
    if (!r) return makeError("--pty-listen: " + r.error());
    b.pty = *r;
    log->info("serving reconnecting PTY on {}", *r);
  }
  if (!config_.speedtest_listen.empty()) {
    auto r = speedtest_->listen(config_.speedtest_listen);
    if (!r) return makeError("--speedtest-listen: " + r.error());
    b.speedtest = *r;
    log->info("serving speed tests on {}", *r);
  }
  if (!config_.api_listen.empty()) {
    auto r = api_->listen(config_.api_listen);
    if (!r) return makeError("--api-listen: " + r.error());
    b.api = *r;
    log->info("serving the HTTP API on http://{}/", *r);
  }
  for (const std::string* a : {&b.ssh, &b.pty, &b.speedtest, &b.api}) {
    if (!a->empty() && a->rfind("unix:", 0) != 0) hidden_ports_->insert(portOf(*a));
  }
  return b;
}

void Services::stopAccepting() {
  accepting_ = false;  // new overlay connections are reset
  if (ssh_) ssh_->stopAccepting();
  if (rpty_) rpty_->stopAccepting();
  if (speedtest_) speedtest_->stopAccepting();
}

void Services::shutdown() {
  if (ssh_) ssh_->shutdown();
  if (rpty_) rpty_->shutdown();
  if (speedtest_) speedtest_->shutdown();
  if (api_) api_->stop();
  overlay_.reset();  // the overlay's connections end; peers see the agent go
}

}  // namespace wsa::agent
