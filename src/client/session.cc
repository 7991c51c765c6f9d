#include "client/session.h"

#include <grpcpp/grpcpp.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>

#include "wsa/common/logging.h"
#include "wsa/control/channel.h"
#include "wsa/control/coordinate_stream.h"
#include "wsa/control/relay_stream.h"
#include "wsa/overlay/coordinator.h"
#include "wsa/overlay/discovery.h"
#include "wsa/overlay/engine.h"
#include "wsa/overlay/path_selector.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"
#include "wsa/overlay/v1/relay_map.pb.h"

namespace wsa::client {

namespace ov = wsa::overlay::v1;

class Session::Signals {
 public:
  explicit Signals(asio::io_context& io) : set(io, SIGINT, SIGTERM) {}
  asio::signal_set set;
};

// The Coordinate and relay streams report their end on a gRPC thread. Each end is posted to the
// loop first and counted here second: once no stream is open, nothing of theirs will touch the
// session again.
class Session::StreamEnds {
 public:
  // Makes `on_done` of the stream called `what` post to the loop and count the end.
  void track(asio::io_context& io, const std::string& what,
             std::function<void(int, std::string)>& on_done) {
    {
      std::lock_guard l(mu_);
      open_.insert(what);
    }
    on_done = [this, &io, what, done = std::move(on_done)](int code, std::string message) {
      asio::post(io, [done, code, message] {
        if (done) done(code, message);
      });
      std::lock_guard l(mu_);
      open_.erase(open_.find(what));
      cv_.notify_all();
    };
  }
  // Waits for every stream's end; the name of one still open when the time is up.
  std::optional<std::string> waitAll(std::chrono::seconds timeout) {
    std::unique_lock l(mu_);
    if (cv_.wait_for(l, timeout, [this] { return open_.empty(); })) return std::nullopt;
    return *open_.begin();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::multiset<std::string> open_;
};

Session::Session(SessionOptions options)
    : options_(std::move(options)),
      log_(logging::get("wsa")),
      io_(std::make_unique<asio::io_context>(1)),
      clock_(makeLoopClock(*io_)),
      found_(std::make_unique<ov::LookupAgentResponse>()),
      ends_(std::make_unique<StreamEnds>()) {}

Session::~Session() = default;

Outcome<std::unique_ptr<Session>> Session::connect(SessionOptions options) {
  auto url = control::parseControlUrl(options.url);
  if (!url) return Exit::usage("--url: " + url.error());
  auto channel = control::makeChannel(*url);
  if (!channel) return Exit::failure(channel.error());
  std::unique_ptr<Session> s(new Session(std::move(options)));
  s->channel_ = std::move(*channel);
  if (Exit e = s->lookup(); e.code != 0) return e;
  return s;
}

// Who is the agent, and who are we in the overlay for this session?
Exit Session::lookup() {
  auto stub = ov::Overlay::NewStub(channel_);
  grpc::ClientContext ctx;
  control::prepareContext(ctx, options_.token);
  ctx.set_deadline(std::chrono::system_clock::now() + options_.connect_timeout);
  ov::LookupAgentRequest req;
  req.set_agent_name(options_.agent);
  grpc::Status s = stub->LookupAgent(&ctx, req, found_.get());
  if (!s.ok()) return Exit::failure("agent \"" + options_.agent + "\": " + s.error_message());
  if (!found_->agent_connected()) {
    return Exit::failure("agent \"" + options_.agent + "\" is not connected to the control server");
  }
  if (found_->agent_addresses().empty() || found_->client_addresses().empty()) {
    return Exit::failure("the control server gave no overlay addresses");
  }
  readRelayMap();
  return Exit::success();
}

Result<overlay::StunTargets> fetchStunTargets(const std::shared_ptr<grpc::Channel>& channel,
                                              const std::string& token, const std::string& url,
                                              bool resolve_hostnames,
                                              std::chrono::seconds timeout) {
  auto stub = ov::Overlay::NewStub(channel);
  grpc::ClientContext ctx;
  control::prepareContext(ctx, token);
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = stub->StreamRelayMaps(&ctx, ov::StreamRelayMapsRequest());
  ov::RelayMap map;
  bool got = reader->Read(&map);
  ctx.TryCancel();
  grpc::Status st = reader->Finish();
  if (!got) return makeError("relay map: " + st.error_message());
  auto parsed = control::parseControlUrl(url);
  std::string host =
      parsed && parsed->scheme != control::ControlUrl::Scheme::kUnix ? parsed->host : "";
  return overlay::stunTargetsFromRelayMap(map, host, resolve_hostnames);
}

// Where endpoint discovery asks (a client session is short; the agent keeps following the
// map). Without a map: no discovery, the relay and the local endpoints still work.
void Session::readRelayMap() {
  if (options_.relay == RelayMode::kAlways) return;  // no probes, no use for reflexive endpoints
  auto targets = fetchStunTargets(channel_, options_.token, options_.url,
                                  /*resolve_hostnames=*/false, std::chrono::seconds(5));
  if (!targets) {
    log_->info("{}: no endpoint discovery", targets.error());
    return;
  }
  for (const auto& skipped : targets->skipped) log_->info("relay map: {}", skipped);
  stun_targets_ = std::move(targets->targets);
}

Exit Session::run(Command& command) {
  command_ = &command;
  if (Exit e = startEngine(); e.code != 0) return e;
  startCoordination();
  deadline_ = clock_->createTimer();
  deadline_->schedule(options_.connect_timeout, [this] { onDeadline(); });
  signals_ = std::make_unique<Signals>(*io_);
  io_->run();
  teardown();
  if (!failure_.empty()) return Exit::failure(failure_);
  return Exit::success();
}

// The engine on our overlay addresses (userspace stack, no privileges), and the choice of path
// to the agent acting on it.
Exit Session::startEngine() {
  overlay::EngineOptions eo;
  eo.addresses = {found_->client_addresses().begin(), found_->client_addresses().end()};
  eo.name = "wsa";
  eo.logger = "wsa";
  auto engine = overlay::Engine::start(*io_, *clock_, std::move(eo));
  if (!engine) return Exit::failure(engine.error());
  engine_ = std::move(*engine);

  overlay::PathSelector::Options po;
  po.mode = options_.relay;
  po.agent = options_.agent;
  po.logger = "wsa";
  overlay::PathSelector::Actions pa;
  pa.use_path = [this](overlay::Path path) {
    return coordinator_->setRoute(found_->agent_id(), path == overlay::Path::kRelay
                                                          ? overlay::Route::kRelay
                                                          : overlay::Route::kPublished);
  };
  pa.handshake = [this] {
    if (const auto* agent = agentPeer()) engine_->device().initiateHandshake(agent->public_key);
  };
  pa.dial = [this] { startCommand(); };
  pa.fail = [this](const std::string& message) { fail(message); };
  pa.has_session = [this] { return hasSession(); };
  pa.use_paths = [this] {
    return coordinator_->setRoute(found_->agent_id(), overlay::Route::kPaths);
  };
  path_ = std::make_unique<overlay::PathSelector>(*clock_, std::move(po), std::move(pa));
  // --relay always: not one probe; --relay never: no relay.
  engine_->paths().setPolicy({.direct = options_.relay != RelayMode::kAlways,
                              .relay = options_.relay != RelayMode::kNever});
  engine_->paths().setOnPathChange(
      [this](const wg::PublicKey& key, const overlay::PeerPathView& view) {
        const auto* agent = agentPeer();
        if (agent == nullptr || agent->public_key != key) return;
        if (view.path == overlay::Path::kDirect) path_->onDirectPath();
        for (auto& f : path_watchers_) f(view);
      });
  return Exit::success();
}

// Coordinate: publish our node (that we answer probes, and our candidate endpoints so that the
// agent probes us too: both NATs open at once; none with --relay always) with a tunnel to the
// agent, learn the agent's node; the relay stream opens once the server has answered (its hello
// must name a key the server knows).
void Session::startCoordination() {
  overlay::CoordinatorOptions co;
  co.publish_endpoints = options_.relay != RelayMode::kAlways;
  co.probes = true;  // --relay always too: wsa ping's probes go through the relay
  co.add_tunnels = {found_->agent_id()};
  co.tunnel_peers_only = true;
  co.answer_ready_for_handshake = false;
  co.remove_departed_peers = false;
  co.default_route = overlay::Route::kNone;  // until the path is chosen
  co.relay.open = options_.relay == RelayMode::kNever
                      ? overlay::CoordinatorOptions::Relay::Open::kNever
                      : overlay::CoordinatorOptions::Relay::Open::kAfterFirstResponse;
  co.relay.reopen = false;  // the path selector decides what its end means
  co.logger = "wsa";
  overlay::CoordinatorHooks hooks;
  hooks.on_peer = [this](const overlay::PeerEvent& e) { onPeer(e); };
  hooks.on_server_error = [this](const std::string& error) {
    fail("control server: " + error);
    return false;
  };
  hooks.on_relay_ready = [this] { path_->onRelayReady(); };
  // The relay stream's end goes to the path selector from the transport (below).
  coordinator_ =
      std::make_unique<overlay::Coordinator>(*engine_, *clock_, std::move(co), std::move(hooks));
  coordinator_->start(found_->client_id(), transport(),
                      [this](int, const std::string&) { onCoordinationEnded(); });
  if (!stun_targets_.empty()) coordinator_->setStunTargets(stun_targets_);
}

// The streams on our own channel, their callbacks on the loop.
overlay::CoordinatorTransport Session::transport() {
  auto post = [this](std::function<void()> f) { asio::post(*io_, std::move(f)); };
  overlay::CoordinatorTransport t;
  t.coordinate = [this, post](control::CoordinateStream::Callbacks cb) {
    cb.post = post;
    ends_->track(*io_, "coordination", cb.on_done);
    return control::CoordinateStream::start(channel_, options_.token, std::move(cb));
  };
  t.relay = [this, post](const control::RelayStream::Key& key, control::RelayStream::Callbacks cb) {
    cb.post = post;
    // Its end matters to the path even when the coordinator ignores it (the end of a stream it
    // stopped because the coordination ended, say): fatal when the relay is the path.
    cb.on_done = [this, done = std::move(cb.on_done)](int code, std::string message) {
      if (done) done(code, message);
      path_->onRelayEnded(code, message);
    };
    ends_->track(*io_, "relay", cb.on_done);
    return control::RelayStream::start(channel_, options_.token, key, std::move(cb));
  };
  return t;
}

void Session::onPeer(const overlay::PeerEvent& e) {
  using Kind = overlay::PeerEvent::Kind;
  switch (e.kind) {
    case Kind::kAdded:
    case Kind::kChanged:
    case Kind::kNewKey: {
      overlay::PathSelector::AgentNode node;
      if (e.node->endpoint) node.endpoint = e.node->endpoint->toString();
      node.new_key = e.kind == Kind::kNewKey;
      node.probes = coordinator_->peerAnswersProbes(e.id);
      path_->onAgentNode(node);
      break;
    }
    case Kind::kReadyForHandshake:
      path_->onReadyForHandshake();
      break;
    case Kind::kDeparted:
      log_->info("agent: {}", e.reason);
      break;
    case Kind::kRejected:  // the coordinator has said why; the node is ignored
      break;
  }
}

void Session::onCoordinationEnded() {
  // Not fatal by itself once dialing: the tunnel's peers stay configured. Before, the deadline
  // says that the agent was not reached.
  if (!path_->dialing() && failure_.empty()) failure_ = "the coordination stream ended";
}

void Session::startCommand() {
  command_->start(*this);
}

void Session::onDeadline() {
  failure_ = "could not reach agent \"" + options_.agent + "\" over the overlay within " +
             std::to_string(options_.connect_timeout.count()) + " s";
  if ((path_->path() != overlay::Path::kNone || path_->probingAgent()) && !hasSession()) {
    failure_ += " (" + path_->noHandshakeMessage() + ")";
  }
  io_->stop();
}

void Session::watchPath(std::function<void(const overlay::PeerPathView&)> watcher) {
  path_watchers_.push_back(std::move(watcher));
}

overlay::Engine& Session::engine() {
  return *engine_;
}

const wg::PeerConfig* Session::agentPeer() const {
  return coordinator_ ? coordinator_->peer(found_->agent_id()) : nullptr;
}

bool Session::hasSession() const {
  const auto* agent = agentPeer();
  auto st = agent ? engine_->device().peer(agent->public_key) : std::nullopt;
  return st && st->has_session;
}

std::string Session::agentAddress() const {
  const std::string& a = found_->agent_addresses(0);
  return a.substr(0, a.find('/'));
}

void Session::dial(uint16_t port, Dialed done) {
  engine_->dial(agentAddress(), port, std::move(done));
}

Result<std::unique_ptr<netstack::UdpFlow>> Session::openUdp(
    uint16_t port, std::function<void(std::span<const uint8_t>)> on_datagram) {
  return engine_->openUdp(agentAddress(), port, std::move(on_datagram));
}

void Session::connectTo(uint16_t port, std::function<void(net::ByteStreamPtr)> connected) {
  dial(port, [this, port, connected = std::move(connected)](Result<net::ByteStreamPtr> s) {
    if (!s) {
      return fail(hasSession() ? "connect to " + options_.agent + " port " + std::to_string(port) +
                                     ": " + s.error()
                               : path_->noHandshakeMessage());
    }
    reached();
    log_->info("connected to {} ({}) port {}", options_.agent, agentAddress(), port);
    connected(std::move(*s));
  });
}

void Session::reached() {
  deadline_->cancel();
}

void Session::fail(std::string message) {
  failure_ = std::move(message);
  io_->stop();
}

void Session::finish() {
  io_->stop();
}

void Session::finishOnSignal() {
  signals_->set.async_wait([this](std::error_code ec, int) {
    if (!ec) finish();
  });
}

// In order: the command stops taking work; the engine's stack goes (its open connections end
// with a reset, sent through the device, which still exists) and the completions that causes
// run, so nothing that holds a socket outlives the loop's handlers; the command's threads end;
// then the coordination and the relay stream, whose ends are awaited before the loop goes.
void Session::teardown() {
  signals_->set.cancel();
  deadline_->cancel();
  path_->stop();
  command_->stop();
  engine_->shutdown();
  overlay::Engine::drainCompletions(*io_);
  command_->join();
  coordinator_.reset();  // cancels both streams
  if (auto open = ends_->waitAll(std::chrono::seconds(10))) {
    std::cerr << "wsa: the " << *open << " stream did not end\n";
    std::_Exit(1);
  }
}

}  // namespace wsa::client
