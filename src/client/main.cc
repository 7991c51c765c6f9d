// wsa: the client CLI. It joins the overlay as a peer of one workspace agent — its own
// WireGuard engine and userspace TCP/IP stack, no privileges — and connects to a port of the
// agent:
//
//   wsa --url URL --token-file FILE proxy AGENT PORT
//       stdin/stdout joined to AGENT's overlay PORT: an ssh ProxyCommand
//       (ssh -o ProxyCommand='wsa --url … proxy %h 22' user@dev)
//   wsa --url URL --token-file FILE forward AGENT [ADDR:]LOCAL:REMOTE
//       a local listener whose connections go to AGENT's overlay port REMOTE
//   wsa --url URL --token-file FILE speedtest AGENT [-d download|upload] [-t 5s] [--json]
//       throughput to the agent's speed test (overlay port 3), over the path in use
//
// The control server resolves the agent (LookupAgent: the user must be allowed to reach it),
// gives this session an overlay identity, and introduces the two peers over Coordinate.
// WireGuard goes directly over UDP to the agent's published endpoint; when no handshake
// completes that way within a few seconds (NAT, firewalls), or the agent publishes no endpoint,
// it goes through the control server's relay instead (--relay auto|always|never).

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "wsa/common/cli_parse.h"
#include "wsa/common/clock.h"
#include "wsa/common/fs.h"
#include "wsa/common/logging.h"
#include "wsa/common/strings.h"
#include "wsa/common/time.h"
#include "wsa/control/channel.h"
#include "wsa/control/relay_stream.h"
#include "wsa/net/listener.h"
#include "wsa/net/splice.h"
#include "wsa/overlay/engine.h"
#include "wsa/overlay/node.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"
#include "wsa/speedtest/speedtest.h"
#include "wsa/version.h"
#include "wsa/wg/device.h"

namespace {

using namespace wsa;
namespace ov = wsa::overlay::v1;

// stdin and stdout as one byte stream.
class StdioStream final : public net::ByteStream {
 public:
  explicit StdioStream(asio::io_context& io) : in_(io, ::dup(0)), out_(io, ::dup(1)) {}
  void asyncReadSome(void* data, std::size_t size, IoHandler handler) override {
    in_.async_read_some(asio::buffer(data, size), std::move(handler));
  }
  void asyncWrite(const void* data, std::size_t size, IoHandler handler) override {
    asio::async_write(out_, asio::buffer(data, size), std::move(handler));
  }
  void shutdownWrite() override {
    std::error_code ec;
    out_.close(ec);
  }
  void close() override {
    std::error_code ec;
    in_.close(ec);
    out_.close(ec);
  }
  std::string remoteAddress() const override { return "stdio"; }

 private:
  asio::posix::stream_descriptor in_, out_;
};

std::string stripPrefix(const std::string& cidr) {
  return cidr.substr(0, cidr.find('/'));
}

// What to do once the agent is reachable: join stdio to `port` (proxy), or listen on `listen`
// and join each local connection to `port` (forward).
enum class RelayMode { kAuto, kAlways, kNever };

struct Target {
  uint16_t port = 0;
  std::string listen;  // empty: proxy stdio
  RelayMode relay = RelayMode::kAuto;
  std::optional<speedtest::Config> speedtest;  // run the speed test client instead of stdio
  bool json = false;
};

constexpr uint16_t kSpeedtestPort = 3;

// How long a direct handshake may take before auto mode turns to the relay.
constexpr std::chrono::seconds kDirectGrace{3};

int run(const std::string& url_text, const std::string& token, const std::string& agent,
        const Target& target, std::chrono::seconds connect_timeout) {
  const uint16_t port = target.port;
  auto log = logging::get("wsa");
  auto url = control::parseControlUrl(url_text);
  if (!url) {
    std::cerr << "wsa: --url: " << url.error() << "\n";
    return 2;
  }
  auto channel = control::makeChannel(*url);
  if (!channel) {
    std::cerr << "wsa: " << channel.error() << "\n";
    return 1;
  }
  auto stub = ov::Overlay::NewStub(*channel);

  // Who is the agent, and who are we in the overlay for this session?
  ov::LookupAgentResponse found;
  {
    grpc::ClientContext ctx;
    control::prepareContext(ctx, token);
    ctx.set_deadline(std::chrono::system_clock::now() + connect_timeout);
    ov::LookupAgentRequest req;
    req.set_agent_name(agent);
    grpc::Status s = stub->LookupAgent(&ctx, req, &found);
    if (!s.ok()) {
      std::cerr << "wsa: agent \"" << agent << "\": " << s.error_message() << "\n";
      return 1;
    }
  }
  if (!found.agent_connected()) {
    std::cerr << "wsa: agent \"" << agent << "\" is not connected to the control server\n";
    return 1;
  }
  if (found.agent_addresses().empty() || found.client_addresses().empty()) {
    std::cerr << "wsa: the control server gave no overlay addresses\n";
    return 1;
  }

  asio::io_context io(1);
  auto clock = makeLoopClock(io);
  overlay::EngineOptions eo;
  eo.addresses = {found.client_addresses().begin(), found.client_addresses().end()};
  eo.name = "wsa";
  eo.logger = "wsa";
  auto started = overlay::Engine::start(io, *clock, std::move(eo));
  if (!started) {
    std::cerr << "wsa: " << started.error() << "\n";
    return 1;
  }
  overlay::Engine& engine = **started;
  wg::Device& device = engine.device();

  // Coordinate: publish our node, open the tunnel, learn the agent's node.
  grpc::ClientContext cctx;
  control::prepareContext(cctx, token);
  auto rw = stub->Coordinate(&cctx);
  {
    ov::CoordinateRequest req;
    auto* node = req.mutable_update_self()->mutable_node();
    node->set_id(found.client_id());
    // No endpoints: we initiate, and the agent learns ours from the first packet.
    overlay::describeNode(device.publicKey(),
                          {found.client_addresses().begin(), found.client_addresses().end()}, {},
                          node);
    req.mutable_add_tunnel()->set_id(found.agent_id());
    if (!rw->Write(req)) {
      std::cerr << "wsa: the coordination stream closed at once: " << rw->Finish().error_message()
                << "\n";
      return 1;
    }
  }

  int exit_code = 0;
  bool dialing = false;
  std::string failure;
  asio::steady_timer deadline(io);
  deadline.expires_after(connect_timeout);
  bool have_node = false, agent_ready = false;
  std::thread speed_thread;
  asio::steady_timer ready_fallback(io);
  asio::steady_timer direct_grace(io);
  std::vector<std::unique_ptr<net::Listener>> listeners;
  asio::signal_set signals(io, SIGINT, SIGTERM);

  // The path to the agent: its published UDP endpoint, or the relay.
  enum class Path { kNone, kDirect, kRelay } path = Path::kNone;
  std::optional<wg::PeerConfig> agent_peer;  // as the agent last published it
  bool fell_back = false;                    // auto mode: the direct path did not work
  std::mutex relay_mu;
  std::condition_variable relay_cv;
  bool relay_ended = true;
  auto hasSession = [&] {
    auto st = agent_peer ? device.peer(agent_peer->public_key) : std::nullopt;
    return st && st->has_session;
  };
  std::function<void()> decide;
  auto openRelay = [&] {
    if (engine.relayStream() || target.relay == RelayMode::kNever) return;
    control::RelayStream::Callbacks cb;
    cb.post = [&io](std::function<void()> f) { asio::post(io, std::move(f)); };
    cb.on_ready = [&] {
      log->debug("relay stream ready");
      decide();
    };
    cb.on_packets = [&](control::RelayStream::Packets packets) {
      engine.deliverRelayed(std::move(packets));
    };
    cb.on_done = [&](int code, std::string message) {
      // Posted first, then marked ended: the teardown waits for the mark before the loop goes.
      asio::post(io, [&, code, message] {
        bool needed = path == Path::kRelay || target.relay == RelayMode::kAlways || fell_back ||
                      (agent_peer && !agent_peer->endpoint);
        if (needed && failure.empty()) {
          failure = "the relay through the control server ended (" + std::to_string(code) +
                    (message.empty() ? "" : ": " + message) + ")";
          io.stop();
        } else {
          log->debug("relay stream ended ({}: {})", code, message);
        }
      });
      std::lock_guard l(relay_mu);
      relay_ended = true;
      relay_cv.notify_all();
    };
    relay_ended = false;
    engine.setRelayStream(
        control::RelayStream::start(*channel, token, device.publicKey(), std::move(cb)));
  };
  // Points the agent's peer at the chosen path.
  auto applyPath = [&]() -> bool {
    wg::PeerConfig pc = *agent_peer;
    if (path == Path::kRelay) pc.endpoint = engine.relayEndpointFor(pc.public_key);
    if (auto st = device.setPeer(pc); !st) {
      failure = st.error();
      io.stop();
      return false;
    }
    return true;
  };
  // Why the agent could not be reached when WireGuard never got through.
  auto noHandshake = [&] {
    std::string how = path == Path::kRelay
                          ? "through the control server's relay"
                          : "over UDP to " + agent_peer->endpoint->toString() +
                                (target.relay == RelayMode::kNever ? " (--relay never)" : "");
    return "could not reach agent \"" + agent + "\": no WireGuard handshake completed " + how;
  };
  deadline.async_wait([&](std::error_code ec) {
    if (ec) return;
    failure = "could not reach agent \"" + agent + "\" over the overlay within " +
              std::to_string(connect_timeout.count()) + " s";
    if (path != Path::kNone && !hasSession()) failure += " (" + noHandshake() + ")";
    io.stop();
  });
  auto watchDirect = [&] {
    // Handshake now (a forwarder may not send anything for a while) and give the direct path a
    // few seconds; in auto mode the relay takes over if no session comes of it.
    device.initiateHandshake(agent_peer->public_key);
    if (target.relay != RelayMode::kAuto || path != Path::kDirect) return;
    direct_grace.expires_after(kDirectGrace);
    direct_grace.async_wait([&](std::error_code ec) {
      if (ec || hasSession() || path != Path::kDirect) return;
      log->info("no direct handshake with the agent within {} s; using the relay",
                kDirectGrace.count());
      fell_back = true;
      decide();
    });
  };
  auto startDial = [&] {
    if (dialing) return;
    dialing = true;
    ready_fallback.cancel();
    watchDirect();
    std::string to = stripPrefix(found.agent_addresses(0));
    if (!target.listen.empty()) {
      // Port forwarding: every local connection gets its own overlay connection.
      deadline.cancel();
      auto bound = net::listenStreams(
          io, target.listen, "port forward",
          [&, to](net::ByteStreamPtr local) {
            auto holder = std::make_shared<net::ByteStreamPtr>(std::move(local));
            engine.dial(to, port, [&, holder](Result<net::ByteStreamPtr> s) {
              if (!s) {
                log->warn("{} port {}: {}", agent, port, s.error());
                (*holder)->abort();
                return;
              }
              net::splice(std::move(*s), std::move(*holder), nullptr);
            });
          },
          listeners);
      if (!bound) {
        failure = "forward: " + bound.error();
        io.stop();
        return;
      }
      std::cerr << "wsa: forwarding " << *bound << " to " << agent << " port " << port
                << " (Ctrl-C stops)" << std::endl;
      signals.async_wait([&](std::error_code ec, int) {
        if (!ec) io.stop();
      });
      return;
    }
    engine.dial(to, port, [&, to](Result<net::ByteStreamPtr> s) {
      if (!s) {
        failure = hasSession()
                      ? "connect to " + agent + " port " + std::to_string(port) + ": " + s.error()
                      : noHandshake();
        io.stop();
        return;
      }
      deadline.cancel();
      log->info("connected to {} ({}) port {}", agent, to, port);
      if (target.speedtest) {
        // The speed test client is blocking code: it runs on its own thread against a socket
        // spliced to the overlay connection.
        auto fd = net::spliceToFd(io, std::move(*s));
        if (!fd) {
          failure = fd.error();
          io.stop();
          return;
        }
        speed_thread = std::thread([&, fd = *fd] {
          auto r = speedtest::runClient(fd, *target.speedtest);
          ::close(fd);
          asio::post(io, [&, r = std::move(r)] {
            if (!r) {
              failure = "speed test: " + r.error();
            } else {
              std::cout << (target.json ? speedtest::resultsToJson(*r) + "\n"
                                        : speedtest::formatResults(*r))
                        << std::flush;
            }
            io.stop();
          });
        });
        return;
      }
      net::splice(std::move(*s), std::make_unique<StdioStream>(io),
                  [&](const net::SpliceResult&) { io.stop(); });
    });
  };
  auto onResponse = [&](const ov::CoordinateResponse& r) {
    if (!r.error().empty()) {
      failure = "control server: " + r.error();
      io.stop();
      return;
    }
    for (const auto& up : r.peer_updates()) {
      if (up.id() != found.agent_id()) continue;
      if (up.kind() == ov::CoordinateResponse::PeerUpdate::KIND_READY_FOR_HANDSHAKE) {
        log->info("agent ready for our handshake");
        agent_ready = true;
        continue;
      }
      if (up.kind() != ov::CoordinateResponse::PeerUpdate::KIND_NODE) {
        log->info("agent: {}", up.reason());
        continue;
      }
      auto peer = overlay::peerFromNode(up.node());
      if (!peer) {
        log->warn("agent node: {}", peer.error());
        continue;
      }
      if (agent_peer && agent_peer->public_key != peer->public_key) {
        device.removePeer(agent_peer->public_key);  // the agent restarted
      }
      agent_peer = *peer;
      log->info("agent node: endpoint {}",
                agent_peer->endpoint ? agent_peer->endpoint->toString() : "(none)");
      if (path != Path::kNone && !applyPath()) return;
      if (!have_node) {
        have_node = true;
        // The agent says when it has added us (ready_for_handshake); should that not come
        // (an agent that predates it), a grace period stands in for it.
        ready_fallback.expires_after(std::chrono::seconds(5));
        ready_fallback.async_wait([&](std::error_code ec) {
          if (ec) return;
          log->info("the agent did not say it was ready for our handshake within 5 s; dialing");
          agent_ready = true;
          decide();
        });
      }
    }
    decide();
  };
  decide = [&] {
    if (!agent_peer || !failure.empty()) return;
    bool relayed = target.relay == RelayMode::kAlways || !agent_peer->endpoint || fell_back;
    if (relayed) {
      if (target.relay == RelayMode::kNever) {
        failure = "the agent publishes no UDP endpoint, and --relay never rules out the relay";
        io.stop();
        return;
      }
      if (!engine.relayReady()) return;  // on_ready decides again
      if (path != Path::kRelay) {
        path = Path::kRelay;
        if (!applyPath()) return;
        log->info("reaching the agent through the control server's relay");
        if (dialing) device.initiateHandshake(agent_peer->public_key);
      }
    } else if (path == Path::kNone) {
      path = Path::kDirect;
      if (!applyPath()) return;
      log->info("reaching the agent directly at {}", agent_peer->endpoint->toString());
    }
    if (have_node && agent_ready) startDial();
  };
  std::thread reader([&] {
    ov::CoordinateResponse r;
    bool first = true;
    while (rw->Read(&r)) {
      asio::post(io, [&, r, first] {
        // The server has our node by now (it answered our add_tunnel), so the relay's hello,
        // which must name a published key, is accepted.
        if (first) openRelay();
        onResponse(r);
      });
      first = false;
    }
    asio::post(io, [&] {
      if (!dialing && failure.empty()) failure = "the coordination stream ended";
    });
  });

  io.run();

  // Teardown in order: the stack first (its open connections end with a reset, sent through
  // the device, which must still exist), then let the completions that causes run, so nothing
  // that holds a socket outlives the loop's handlers.
  signals.cancel();
  deadline.cancel();
  ready_fallback.cancel();
  direct_grace.cancel();
  listeners.clear();
  engine.shutdown();
  overlay::Engine::drainCompletions(io);
  // The overlay connection is gone, so the speed test's socket sees its end.
  if (speed_thread.joinable()) speed_thread.join();
  cctx.TryCancel();
  reader.join();
  rw->Finish();
  if (engine.relayStream()) {
    // Its callbacks post to the loop: wait for the last one before the loop goes.
    engine.relayStream()->cancel();
    std::unique_lock l(relay_mu);
    if (!relay_cv.wait_for(l, std::chrono::seconds(10), [&] { return relay_ended; })) {
      std::cerr << "wsa: the relay stream did not end\n";
      std::_Exit(1);
    }
  }
  if (!failure.empty()) {
    std::cerr << "wsa: " << failure << "\n";
    exit_code = 1;
  }
  logging::flush();
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsa " WSA_VERSION " — reach a workspace through the overlay"};
  std::string url, token, token_file, level = "warn";
  std::string agent;
  int port = 22;
  int timeout = 30;
  app.add_option("--url", url, "Control server URL (http://, https://, unix:)")
      ->envname("WSA_URL")
      ->required();
  app.add_option("--token", token, "User token (prefer --token-file)")->envname("WSA_TOKEN");
  app.add_option("--token-file", token_file, "File holding the user token")
      ->envname("WSA_TOKEN_FILE");
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  std::string relay_mode = "auto";
  app.add_option("--relay", relay_mode,
                 "auto: direct UDP, the control server's relay when that fails; always; never")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_option("--connect-timeout", timeout, "Seconds to reach the agent")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));
  auto* proxy_cmd = app.add_subcommand(
      "proxy", "Join stdin/stdout to a TCP port of the agent (an ssh ProxyCommand)");
  proxy_cmd->add_option("agent", agent, "Agent name")->required();
  proxy_cmd->add_option("port", port, "Overlay TCP port (22: SSH)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  std::string spec;
  auto* forward_cmd = app.add_subcommand(
      "forward", "Forward a local TCP port to a port of the agent until interrupted");
  forward_cmd->add_option("agent", agent, "Agent name")->required();
  forward_cmd
      ->add_option("ports", spec,
                   "[LOCAL_ADDRESS:]LOCAL_PORT:REMOTE_PORT, or REMOTE_PORT (same port "
                   "locally); the local address defaults to 127.0.0.1")
      ->required();
  std::string direction = "download", duration = "5s";
  bool json = false;
  auto* speed_cmd = app.add_subcommand(
      "speedtest", "Measure throughput to the agent's speed test (overlay port 3)");
  speed_cmd->add_option("agent", agent, "Agent name")->required();
  speed_cmd->add_option("-d,--direction", direction, "download (agent to you) or upload")
      ->capture_default_str()
      ->check(CLI::IsMember({"download", "upload"}));
  speed_cmd->add_option("-t,--time", duration, "How long to measure (1s to 30s)")
      ->capture_default_str();
  speed_cmd->add_flag("--json", json, "Print the results as JSON");
  app.require_subcommand(1);
  WSA_CLI_PARSE(app, argc, argv);

  Target target;
  target.port = static_cast<uint16_t>(port);
  target.relay = relay_mode == "always"  ? RelayMode::kAlways
                 : relay_mode == "never" ? RelayMode::kNever
                                         : RelayMode::kAuto;
  if (speed_cmd->parsed()) {
    speedtest::Config cfg;
    cfg.direction =
        direction == "upload" ? speedtest::Direction::kUpload : speedtest::Direction::kDownload;
    auto d = parseDuration(duration);
    if (!d || *d < std::chrono::seconds(1) || *d > std::chrono::seconds(30)) {
      std::cerr << "wsa: speedtest --time: \"" << duration
                << "\" is not a duration from 1s to 30s\n";
      return 2;
    }
    cfg.duration = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    target.speedtest = cfg;
    target.json = json;
    target.port = kSpeedtestPort;
  }
  if (forward_cmd->parsed()) {
    auto number = [](const std::string& s) -> int {
      if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) {
        return -1;
      }
      return std::stoi(s);
    };
    size_t colon = spec.rfind(':');
    int remote = number(colon == std::string::npos ? spec : spec.substr(colon + 1));
    std::string local = colon == std::string::npos ? spec : spec.substr(0, colon);
    if (remote < 1 || remote > 65535) {
      std::cerr << "wsa: forward " << spec << ": the remote port must be 1 to 65535\n";
      return 2;
    }
    int local_port = number(local);
    if (local_port >= 0) {
      if (local_port > 65535) {
        std::cerr << "wsa: forward " << spec << ": the local port must be 0 to 65535\n";
        return 2;
      }
      local = "127.0.0.1:" + local;
    }
    target.port = static_cast<uint16_t>(remote);
    target.listen = local;
  }

  if (token.empty() && !token_file.empty()) {
    auto t = readFile(token_file, 64 * 1024);
    if (!t) {
      std::cerr << "wsa: --token-file: " << t.error() << "\n";
      return 2;
    }
    token = std::string(trim(*t));
  }
  if (token.empty()) {
    std::cerr << "wsa: a token is needed (--token-file, --token or WSA_TOKEN)\n";
    return 2;
  }
  wsa::logging::Options lopts;
  lopts.level = level;
  if (auto st = wsa::logging::init(lopts); !st) {
    std::cerr << "wsa: " << st.error() << "\n";
    return 2;
  }
  return run(url, token, agent, target, std::chrono::seconds(timeout));
}
