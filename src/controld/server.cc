#include "controld/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>
#include <grpcpp/security/server_credentials.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "controld/admin_api.h"
#include "controld/context.h"
#include "controld/relay_ticket.h"
#include "controld/ticket_relay.h"
#include "wsa/common/clock.h"
#include "wsa/common/fs.h"
#include "wsa/common/logging.h"
#include "wsa/common/metrics.h"
#include "wsa/common/secret.h"
#include "wsa/http/server.h"
#include "wsa/net/address.h"
#include "wsa/version.h"

namespace wsa::controld {

std::string defaultDataDir() {
  if (::geteuid() == 0) return "/var/lib/wsa-controld";
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x != '\0') {
    return std::string(x) + "/wsa-controld";
  }
  return homeDirectory() + "/.local/state/wsa-controld";
}

std::string relaySigningKeyPath(const std::string& data_dir) {
  return data_dir + "/relay-signing.key";
}

Result<std::string> relaySigningPublicKey(const std::string& data_dir) {
  auto st = makeDirs(data_dir, 0700);
  if (!st) return makeError("--data-dir: " + st.error());
  auto signer = RelayTicketSigner::loadOrCreate(relaySigningKeyPath(data_dir));
  if (!signer) return makeError(signer.error());
  return (*signer)->publicKeyBase64();
}

Result<std::vector<std::string>> loadRelayOnlyConfig(const std::string& path) {
  auto text = readFile(path, 1u << 20);
  if (!text) return makeError(path + ": " + text.error());
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return makeError(path + ": not a JSON object");
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) {
    if (k != "relay_trusted_keys") {
      return makeError(path + ": " + k +
                       ": unknown field (a relay-only node's config has relay_trusted_keys only)");
    }
    if (!v.is_array()) return makeError(path + ": relay_trusted_keys: must be an array");
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) {
        return makeError(path + ": relay_trusted_keys[" + std::to_string(i) +
                         "]: must be a string");
      }
      keys.push_back(v[i].get<std::string>());
    }
  }
  return keys;
}

class Controld::Impl {
 public:
  ControldOptions options;
  Config config;
  std::shared_ptr<spdlog::logger> log = logging::get("controld");
  std::unique_ptr<Store> store;
  std::unique_ptr<Hub> hub;
  std::unique_ptr<RelayTicketSigner> signer;  // relay tickets (not with --relay-only)
  std::unique_ptr<Clock> clock;               // on `io`
  std::unique_ptr<TicketRelay> ticket_relay;  // --relay-only
  Metrics metrics;
  metrics::Collectors collectors;  // /metrics: controld's own counts and the hub's
  ServiceContext ctx;
  std::unique_ptr<grpc::Service> agent_service;
  std::unique_ptr<grpc::Service> overlay_service;
  std::unique_ptr<grpc::Server> grpc_server;
  asio::io_context io;
  std::unique_ptr<asio::steady_timer> ticket_sweep;  // on `io`: Hub::refreshTickets
  std::unique_ptr<http::Server> http_server;
  std::unique_ptr<StunServer> stun_server;  // on `io`; destroyed before it
  std::string grpc_address;
  std::string http_address;
  std::thread shutdown_thread;  // runs gRPC's blocking Shutdown off the loop

  Status start();
  Status startRelayOnly();
  // Serves gRPC with `services` (and the options' TLS) on --grpc-listen, then STUN before it.
  Status startGrpc(const std::vector<grpc::Service*>& services);
  Status startHttp(http::Router router);
  Status writeReadyFile();
  void sweepTickets();
  // Binds the STUN listeners (before gRPC starts: the default relay map carries their ports).
  Status startStun(const net::ListenAddress& grpc);
  // Closes streams, drains in-flight calls (bounded by the grace period), stops gRPC. Blocks.
  void stopGrpc();
  void shutdown();
  bool grpc_stopped = false;
};

void Controld::Impl::stopGrpc() {
  if (grpc_stopped) return;
  grpc_stopped = true;
  ctx.shutting_down = true;
  if (hub) hub->shutdown("server is shutting down");
  if (ticket_relay) ticket_relay->shutdown("server is shutting down");
  auto streams = [this] {
    return (hub ? hub->openStreamCount() : 0) +
           (ticket_relay ? ticket_relay->openStreamCount() : 0);
  };
  auto deadline = std::chrono::steady_clock::now() + options.shutdown_grace;
  while (std::chrono::steady_clock::now() < deadline && (ctx.inflight > 0 || streams() > 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (ctx.inflight > 0 || streams() > 0) {
    log->warn("{} call(s) and {} stream(s) still open after {} ms; cancelling them",
              ctx.inflight.load(), streams(), options.shutdown_grace.count());
  }
  if (grpc_server) {
    grpc_server->Shutdown(std::chrono::system_clock::now());
    grpc_server->Wait();
  }
}

Status Controld::Impl::start() {
  // Identities: agents get their persistent id and overlay addresses from the store.
  std::vector<AgentIdentity> identities;
  for (const auto& ac : config.agents) {
    AgentRecord rec = store->ensureAgent(ac.name);
    ctx.agent_configs[rec.id] = &ac;
    ctx.agent_records[rec.id] = rec;
    ctx.identities[sha256Hex(ac.token)] = Principal{Principal::Kind::kAgent, ac.name, rec.id};
    AgentIdentity id{rec.id, ac.name, {rec.ipv4, rec.ipv6}, {}};
    id.allowed_users.insert(ac.allowed_users.begin(), ac.allowed_users.end());
    identities.push_back(std::move(id));
  }
  for (const auto& u : config.users) {
    ctx.identities[sha256Hex(u.token)] = Principal{Principal::Kind::kUser, u.name, ""};
  }
  store->resetConnected(std::chrono::system_clock::now());
  if (config.banner && !store->banner()) {
    store->setBanner(*config.banner, std::chrono::system_clock::now());
  }
  Hub::Callbacks cb;
  cb.on_agent_connection = [this](const std::string& agent_id, bool connected) {
    try {
      store->setConnected(agent_id, connected, std::chrono::system_clock::now());
    } catch (const std::exception& e) {
      log->error("recording agent connection state: {}", e.what());
    }
  };
  auto signer_loaded = RelayTicketSigner::loadOrCreate(relaySigningKeyPath(options.data_dir));
  if (!signer_loaded) return makeError(signer_loaded.error());
  signer = std::move(*signer_loaded);
  TicketIssuing issuing;
  issuing.signer = signer.get();
  issuing.lifetime_ms = options.ticket_lifetime.count();
  hub = std::make_unique<Hub>(std::move(identities), std::move(cb), std::move(issuing));
  collectors.add([this](metrics::Families& out) { metrics.collect(out); });
  collectors.add([this](metrics::Families& out) { hub->collectMetrics(out); });

  ctx.config = &config;
  ctx.store = store.get();
  ctx.hub = hub.get();
  ctx.metrics = &metrics;
  ctx.collectors = &collectors;
  ctx.log = log;
  ctx.version = WSA_VERSION;
  agent_service = makeAgentService(ctx);
  overlay_service = makeOverlayService(ctx);

  if (auto st = startGrpc({agent_service.get(), overlay_service.get()}); !st) return st;
  if (auto st = startHttp(makeAdminRouter(ctx)); !st) return st;
  log->info("serving gRPC on {}{} and HTTP on {}; {} agent(s), {} user(s) configured", grpc_address,
            options.tls_cert.empty() ? "" : " (TLS)", http_address, config.agents.size(),
            config.users.size());
  log->info("relay tickets signed with the key in {} (public key: controld --print-relay-key)",
            relaySigningKeyPath(options.data_dir));
  sweepTickets();
  return writeReadyFile();
}

void Controld::Impl::sweepTickets() {
  if (!ticket_sweep) ticket_sweep = std::make_unique<asio::steady_timer>(io);
  ticket_sweep->expires_after(options.ticket_sweep_interval);
  ticket_sweep->async_wait([this](std::error_code ec) {
    if (ec) return;
    hub->refreshTickets();
    sweepTickets();
  });
}

Status Controld::Impl::startRelayOnly() {
  auto verifier = RelayTicketVerifier::fromBase64(options.relay_trusted_keys);
  if (!verifier) return makeError(verifier.error());
  if (verifier->keyCount() == 0) {
    return makeError(
        "--relay-only needs the control server's relay key: --relay-trusted-key KEY (the output of "
        "controld --print-relay-key on the control server), or relay_trusted_keys in --config");
  }
  if (options.max_relay_streams == 0) return makeError("--max-relay-streams must be positive");
  clock = makeLoopClock(io);
  ticket_relay =
      std::make_unique<TicketRelay>(std::move(*verifier), *clock, options.max_relay_streams);
  collectors.add([this](metrics::Families& out) { metrics.collect(out); });
  collectors.add([this](metrics::Families& out) { ticket_relay->collectMetrics(out); });
  ctx.config = &config;
  ctx.metrics = &metrics;
  ctx.collectors = &collectors;
  ctx.log = log;
  ctx.version = WSA_VERSION;
  overlay_service = makeRelayOnlyService(ctx, *ticket_relay);
  if (auto st = startGrpc({overlay_service.get()}); !st) return st;
  if (auto st = startHttp(makeHealthRouter(ctx)); !st) return st;
  log->info(
      "relay-only: serving Overlay.Relay on {}{} and HTTP (/metrics, /healthz) on {}; {} "
      "trusted relay key(s), at most {} streams",
      grpc_address, options.tls_cert.empty() ? "" : " (TLS)", http_address,
      options.relay_trusted_keys.size(), options.max_relay_streams);
  return writeReadyFile();
}

Status Controld::Impl::startGrpc(const std::vector<grpc::Service*>& services) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    if (options.tls_cert.empty() || options.tls_key.empty()) {
      return makeError("--tls-cert and --tls-key must be given together");
    }
    auto cert = readFile(options.tls_cert);
    if (!cert) return makeError("TLS certificate " + cert.error());
    auto key = readFile(options.tls_key);
    if (!key) return makeError("TLS key " + key.error());
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }

  auto parsed = net::parseListenAddress(options.grpc_listen);
  if (!parsed) return makeError("--grpc-listen: " + parsed.error());
  std::string target = options.grpc_listen;
  if (parsed->is_unix) {
    target = "unix:" + parsed->path;
  } else if (parsed->host.empty()) {
    target = "[::]:" + std::to_string(parsed->port);
  }
  if (auto st = startStun(*parsed); !st) return st;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(target, creds, parsed->is_unix ? nullptr : &bound_port);
  for (auto* service : services) builder.RegisterService(service);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  grpc_server = builder.BuildAndStart();
  if (!grpc_server || (!parsed->is_unix && bound_port == 0)) {
    return makeError("cannot serve gRPC on " + options.grpc_listen +
                     " (address in use, or not allowed)");
  }
  grpc_address = parsed->is_unix ? "unix:" + parsed->path
                                 : net::joinHostPort(parsed->host.empty() ? "::" : parsed->host,
                                                     static_cast<uint16_t>(bound_port));
  return Status::success();
}

Status Controld::Impl::startHttp(http::Router router) {
  http::ServerOptions hopts;
  http_server = std::make_unique<http::Server>(io, std::move(router), hopts);
  auto bound = http_server->listen(options.http_listen);
  if (!bound) return makeError("--http-listen: " + bound.error());
  http_address = *bound;
  return Status::success();
}

Status Controld::Impl::writeReadyFile() {
  if (!options.ready_file.empty()) {
    nlohmann::json ready = {
        {"grpc", grpc_address},
        {"http", http_address},
        {"stun", stun_server ? stun_server->addresses() : std::vector<std::string>{}},
        {"pid", ::getpid()}};
    auto st = writeFileAtomic(options.ready_file, ready.dump() + "\n");
    if (!st) return makeError("--ready-file: " + st.error());
  }
  return Status::success();
}

Status Controld::Impl::startStun(const net::ListenAddress& grpc) {
  std::vector<std::string> listen = options.stun_listen;
  if (listen.empty()) {
    if (grpc.is_unix) {
      log->info("STUN off (gRPC is on a Unix socket and no --stun-listen was given)");
      return Status::success();
    }
    listen.push_back(grpc.host.empty() ? ":3478" : net::joinHostPort(grpc.host, 3478));
  }
  if (std::find(listen.begin(), listen.end(), "none") != listen.end()) {
    if (listen.size() > 1) return makeError("--stun-listen none cannot go with other addresses");
    log->info("STUN off (--stun-listen none)");
    return Status::success();
  }
  auto s = StunServer::start(io, listen, options.stun_limits, log);
  if (!s) return makeError(s.error());
  stun_server = std::move(*s);
  for (const auto& a : stun_server->addresses()) log->info("STUN on {}", a);
  collectors.add([this](metrics::Families& out) { stun_server->collect(out); });
  if (config.default_relay_map) {
    // Region 1 is this server: its STUN ports as bound (stun_host empty: the control host).
    for (auto& region : *config.relay_map.mutable_regions()) {
      for (auto& node : *region.mutable_nodes()) {
        node.clear_stun_ports();
        for (uint16_t port : stun_server->ports()) node.add_stun_ports(port);
      }
    }
  }
  return Status::success();
}

void Controld::Impl::shutdown() {
  if (shutdown_thread.joinable()) shutdown_thread.join();
  ticket_sweep.reset();
  stopGrpc();
  if (http_server) http_server->stop();
  if (stun_server) stun_server->stop();
  log->info("stopped");
  logging::flush();
}

Result<std::unique_ptr<Controld>> Controld::create(ControldOptions options, Config config) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->config = std::move(config);
  if (impl->options.data_dir.empty()) impl->options.data_dir = defaultDataDir();
  if (impl->options.relay_only) {
    auto st = impl->startRelayOnly();
    if (!st) {
      impl->shutdown();
      return makeError(st.error());
    }
    return std::unique_ptr<Controld>(new Controld(std::move(impl)));
  }
  {
    // The relay signing key lives in the data directory, whatever --db says.
    auto st = makeDirs(impl->options.data_dir, 0700);
    if (!st) return makeError("--data-dir: " + st.error());
  }
  if (impl->options.db_path.empty()) {
    auto st = makeDirs(impl->options.data_dir, 0700);
    if (!st) return makeError("--data-dir: " + st.error());
    impl->options.db_path = impl->options.data_dir + "/controld.db";
  }
  auto store = Store::open(impl->options.db_path);
  if (!store) return makeError(impl->options.db_path + ": " + store.error());
  impl->store = std::move(*store);
  auto st = impl->start();
  if (!st) {
    impl->shutdown();
    return makeError(st.error());
  }
  return std::unique_ptr<Controld>(new Controld(std::move(impl)));
}

Controld::Controld(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Controld::~Controld() = default;

int Controld::run() {
  asio::signal_set signals(impl_->io, SIGINT, SIGTERM);
  signals.async_wait([this](std::error_code ec, int sig) {
    if (ec) return;
    impl_->log->info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    // gRPC's Shutdown blocks; run it off the loop so HTTP keeps answering meanwhile.
    impl_->log->info("shutting down: closing streams, then draining calls (up to {} ms)",
                     impl_->options.shutdown_grace.count());
    impl_->shutdown_thread = std::thread([this] {
      impl_->stopGrpc();
      asio::post(impl_->io, [this] {
        impl_->http_server->stop();
        if (impl_->ticket_sweep) impl_->ticket_sweep->cancel();
        if (impl_->stun_server) impl_->stun_server->stop();
        impl_->io.stop();
      });
    });
  });
  impl_->io.run();
  impl_->shutdown();
  return 0;
}

}  // namespace wsa::controld
