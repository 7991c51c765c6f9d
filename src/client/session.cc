#include "client/session.h"

#include <grpcpp/grpcpp.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>

#include "wsa/common/logging.h"
#include "wsa/control/channel.h"
#include "wsa/control/relay_stream.h"
#include "wsa/netstack/netstack.h"
#include "wsa/overlay/node.h"
#include "wsa/overlay/relay_path.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"
#include "wsa/wg/device.h"
#include "wsa/wg/udp.h"

namespace wsa::client {

namespace ov = wsa::overlay::v1;
using PeerUpdate = ov::CoordinateResponse::PeerUpdate;

namespace {

// How long a direct handshake may take before auto mode turns to the relay.
constexpr std::chrono::seconds kDirectGrace{3};
// How long to wait for the agent's ready_for_handshake (an agent that predates it never sends
// one) before dialing anyway.
constexpr std::chrono::seconds kReadyFallback{5};

std::string stripPrefix(const std::string& cidr) {
  return cidr.substr(0, cidr.find('/'));
}

}  // namespace

class Session::Signals {
 public:
  explicit Signals(asio::io_context& io) : set(io, SIGINT, SIGTERM) {}
  asio::signal_set set;
};

Session::Session(SessionOptions options)
    : options_(std::move(options)),
      log_(logging::get("wsa")),
      io_(std::make_unique<asio::io_context>(1)),
      clock_(makeLoopClock(*io_)),
      found_(std::make_unique<ov::LookupAgentResponse>()) {}

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
  return Exit::success();
}

Exit Session::run(Command& command) {
  command_ = &command;
  if (Exit e = startEngine(); e.code != 0) return e;
  if (Exit e = startCoordination(); e.code != 0) return e;
  deadline_ = clock_->createTimer();
  ready_fallback_ = clock_->createTimer();
  direct_grace_ = clock_->createTimer();
  deadline_->schedule(options_.connect_timeout, [this] { onDeadline(); });
  signals_ = std::make_unique<Signals>(*io_);
  reader_ = std::thread([this] { readCoordination(); });
  io_->run();
  teardown();
  if (!failure_.empty()) return Exit::failure(failure_);
  return Exit::success();
}

Exit Session::startEngine() {
  relay_ = std::make_unique<overlay::RelayPath>();
  device_ = std::make_unique<wg::Device>(
      *clock_, wg::DeviceOptions{},
      wg::Device::Io{
          .send =
              [this](const wg::Endpoint& to, std::span<const uint8_t> d) {
                if (!relay_->send(to, d) && udp_) udp_->send(to, d);
              },
          .deliver =
              [this](std::span<const uint8_t> p) {
                if (stack_) stack_->input(p);
              },
      });
  device_->setPrivateKey(wg::generatePrivateKey());
  auto u = wg::UdpBind::open(*io_, 0, [this](const wg::Endpoint& from, std::span<uint8_t> d) {
    device_->receive(from, d);
  });
  if (!u) return Exit::failure(u.error());
  udp_ = std::move(*u);
  netstack::Options nopts;
  for (const auto& a : found_->client_addresses()) nopts.addresses.push_back(stripPrefix(a));
  auto n = netstack::Netstack::create(*io_, nopts,
                                      [this](std::span<const uint8_t> p) { device_->send(p); });
  if (!n) return Exit::failure(n.error());
  stack_ = std::move(*n);
  return Exit::success();
}

// Coordinate: publish our node, open the tunnel, learn the agent's node.
Exit Session::startCoordination() {
  coordinate_context_ = std::make_unique<grpc::ClientContext>();
  control::prepareContext(*coordinate_context_, options_.token);
  auto stub = ov::Overlay::NewStub(channel_);
  coordinate_ = stub->Coordinate(coordinate_context_.get());
  ov::CoordinateRequest req;
  auto* node = req.mutable_update_self()->mutable_node();
  node->set_id(found_->client_id());
  // No endpoints: we initiate, and the agent learns ours from the first packet.
  overlay::describeNode(device_->publicKey(),
                        {found_->client_addresses().begin(), found_->client_addresses().end()}, {},
                        node);
  req.mutable_add_tunnel()->set_id(found_->agent_id());
  if (!coordinate_->Write(req)) {
    return Exit::failure("the coordination stream closed at once: " +
                         coordinate_->Finish().error_message());
  }
  return Exit::success();
}

// The reader thread: hands each response to the loop.
void Session::readCoordination() {
  ov::CoordinateResponse r;
  bool first = true;
  while (coordinate_->Read(&r)) {
    asio::post(*io_, [this, r, first] {
      // The server has our node by now (it answered our add_tunnel), so the relay's hello,
      // which must name a published key, is accepted.
      if (first) openRelay();
      onResponse(r);
    });
    first = false;
  }
  asio::post(*io_, [this] {
    if (!dialing_ && failure_.empty()) failure_ = "the coordination stream ended";
  });
}

void Session::onResponse(const ov::CoordinateResponse& r) {
  if (!r.error().empty()) return fail("control server: " + r.error());
  for (const auto& up : r.peer_updates()) {
    if (up.id() != found_->agent_id()) continue;
    if (up.kind() == PeerUpdate::KIND_READY_FOR_HANDSHAKE) {
      log_->info("agent ready for our handshake");
      agent_ready_ = true;
    } else if (up.kind() != PeerUpdate::KIND_NODE) {
      log_->info("agent: {}", up.reason());
    } else {
      if (!onAgentNode(up)) return;
    }
  }
  decide();
}

bool Session::onAgentNode(const PeerUpdate& up) {
  auto peer = overlay::peerFromNode(up.node());
  if (!peer) {
    log_->warn("agent node: {}", peer.error());
    return true;
  }
  if (agent_peer_ && agent_peer_->public_key != peer->public_key) {
    device_->removePeer(agent_peer_->public_key);  // the agent restarted
  }
  agent_peer_ = std::make_unique<wg::PeerConfig>(*peer);
  log_->info("agent node: endpoint {}",
             agent_peer_->endpoint ? agent_peer_->endpoint->toString() : "(none)");
  if (path_ != Path::kNone && !applyPath()) return false;
  if (have_node_) return true;
  have_node_ = true;
  // The agent says when it has added us (ready_for_handshake); should that not come (an agent
  // that predates it), a grace period stands in for it.
  ready_fallback_->schedule(kReadyFallback, [this] {
    log_->info("the agent did not say it was ready for our handshake within 5 s; dialing");
    agent_ready_ = true;
    decide();
  });
  return true;
}

// Chooses the path to the agent (direct, or the relay) and dials once the agent is ready.
void Session::decide() {
  if (!agent_peer_ || !failure_.empty()) return;
  bool relayed = options_.relay == RelayMode::kAlways || !agent_peer_->endpoint || fell_back_;
  if (relayed) {
    if (options_.relay == RelayMode::kNever) {
      return fail("the agent publishes no UDP endpoint, and --relay never rules out the relay");
    }
    if (!relay_->ready()) return;  // the relay's on_ready decides again
    if (path_ != Path::kRelay) {
      path_ = Path::kRelay;
      if (!applyPath()) return;
      log_->info("reaching the agent through the control server's relay");
      if (dialing_) device_->initiateHandshake(agent_peer_->public_key);
    }
  } else if (path_ == Path::kNone) {
    path_ = Path::kDirect;
    if (!applyPath()) return;
    log_->info("reaching the agent directly at {}", agent_peer_->endpoint->toString());
  }
  if (have_node_ && agent_ready_) startCommand();
}

// Points the agent's peer at the chosen path.
bool Session::applyPath() {
  wg::PeerConfig pc = *agent_peer_;
  if (path_ == Path::kRelay) pc.endpoint = relay_->endpointFor(pc.public_key);
  if (auto st = device_->setPeer(pc); !st) {
    fail(st.error());
    return false;
  }
  return true;
}

// Handshakes now (a forwarder may not send anything for a while) and gives the direct path a
// few seconds; in auto mode the relay takes over if no session comes of it.
void Session::watchDirect() {
  device_->initiateHandshake(agent_peer_->public_key);
  if (options_.relay != RelayMode::kAuto || path_ != Path::kDirect) return;
  direct_grace_->schedule(kDirectGrace, [this] {
    if (hasSession() || path_ != Path::kDirect) return;
    log_->info("no direct handshake with the agent within {} s; using the relay",
               kDirectGrace.count());
    fell_back_ = true;
    decide();
  });
}

void Session::startCommand() {
  if (dialing_) return;
  dialing_ = true;
  ready_fallback_->cancel();
  watchDirect();
  command_->start(*this);
}

void Session::onDeadline() {
  failure_ = "could not reach agent \"" + options_.agent + "\" over the overlay within " +
             std::to_string(options_.connect_timeout.count()) + " s";
  if (path_ != Path::kNone && !hasSession()) failure_ += " (" + noHandshake() + ")";
  io_->stop();
}

void Session::openRelay() {
  if (relay_->stream() || options_.relay == RelayMode::kNever) return;
  control::RelayStream::Callbacks cb;
  cb.post = [this](std::function<void()> f) { asio::post(*io_, std::move(f)); };
  cb.on_ready = [this] {
    log_->debug("relay stream ready");
    decide();
  };
  cb.on_packets = [this](control::RelayStream::Packets packets) {
    relay_->deliver(*device_, std::move(packets));
  };
  cb.on_done = [this](int code, std::string message) {
    // Posted first, then marked ended: the teardown waits for the mark before the loop goes.
    asio::post(*io_, [this, code, message] { onRelayDone(code, message); });
    std::lock_guard l(relay_mu_);
    relay_ended_ = true;
    relay_cv_.notify_all();
  };
  relay_ended_ = false;
  relay_->setStream(
      control::RelayStream::start(channel_, options_.token, device_->publicKey(), std::move(cb)));
}

void Session::onRelayDone(int code, const std::string& message) {
  bool needed = path_ == Path::kRelay || options_.relay == RelayMode::kAlways || fell_back_ ||
                (agent_peer_ && !agent_peer_->endpoint);
  if (needed && failure_.empty()) {
    fail("the relay through the control server ended (" + std::to_string(code) +
         (message.empty() ? "" : ": " + message) + ")");
  } else {
    log_->debug("relay stream ended ({}: {})", code, message);
  }
}

bool Session::hasSession() const {
  auto st = agent_peer_ ? device_->peer(agent_peer_->public_key) : std::nullopt;
  return st && st->has_session;
}

std::string Session::agentAddress() const {
  return stripPrefix(found_->agent_addresses(0));
}

// Why the agent could not be reached when WireGuard never got through.
std::string Session::noHandshake() const {
  std::string how = path_ == Path::kRelay
                        ? "through the control server's relay"
                        : "over UDP to " + agent_peer_->endpoint->toString() +
                              (options_.relay == RelayMode::kNever ? " (--relay never)" : "");
  return "could not reach agent \"" + options_.agent + "\": no WireGuard handshake completed " +
         how;
}

void Session::dial(uint16_t port, Dialed done) {
  stack_->dial(agentAddress(), port, std::move(done));
}

void Session::connectTo(uint16_t port, std::function<void(net::ByteStreamPtr)> connected) {
  dial(port, [this, port, connected = std::move(connected)](Result<net::ByteStreamPtr> s) {
    if (!s) {
      return fail(hasSession() ? "connect to " + options_.agent + " port " + std::to_string(port) +
                                     ": " + s.error()
                               : noHandshake());
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

// In order: the stack first (its open connections end with a reset, sent through the device,
// which must still exist), then the completions that causes run, so nothing that holds a socket
// outlives the loop's handlers; then the coordination and the relay stream.
void Session::teardown() {
  signals_->set.cancel();
  deadline_->cancel();
  ready_fallback_->cancel();
  direct_grace_->cancel();
  command_->stop();
  stack_.reset();
  for (int i = 0; i < 1000; ++i) {
    io_->restart();
    if (io_->poll() == 0) break;
  }
  command_->join();
  coordinate_context_->TryCancel();
  reader_.join();
  coordinate_->Finish();
  if (relay_->stream()) {
    // Its callbacks post to the loop: wait for the last one before the loop goes.
    relay_->stream()->cancel();
    std::unique_lock l(relay_mu_);
    if (!relay_cv_.wait_for(l, std::chrono::seconds(10), [this] { return relay_ended_; })) {
      std::cerr << "wsa: the relay stream did not end\n";
      std::_Exit(1);
    }
  }
}

}  // namespace wsa::client
