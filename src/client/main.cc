// wsa: the client CLI. It joins the overlay as a peer of one workspace agent — its own
// WireGuard engine and userspace TCP/IP stack, no privileges — and connects to a port of the
// agent:
//
//   wsa --url URL --token-file FILE proxy AGENT PORT
//       stdin/stdout joined to AGENT's overlay PORT: an ssh ProxyCommand
//       (ssh -o ProxyCommand='wsa --url … proxy %h 22' user@dev)
//   wsa --url URL --token-file FILE forward AGENT [ADDR:]LOCAL:REMOTE
//       a local listener whose connections go to AGENT's overlay port REMOTE
//
// The control server resolves the agent (LookupAgent: the user must be allowed to reach it),
// gives this session an overlay identity, and introduces the two peers over Coordinate.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/cli_parse.h"
#include "netstack/netstack.h"
#include "wg/device.h"
#include "wg/node.h"
#include "wg/udp.h"
#include "wsa/common/clock.h"
#include "wsa/common/logging.h"
#include "wsa/control/channel.h"
#include "wsa/net/listener.h"
#include "wsa/net/splice.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"
#include "wsa/version.h"

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

std::string stripPrefix(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

// What to do once the agent is reachable: join stdio to `port` (proxy), or listen on `listen`
// and join each local connection to `port` (forward).
struct Target {
  uint16_t port = 0;
  std::string listen;  // empty: proxy stdio
};

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
  std::unique_ptr<wg::UdpBind> udp;
  std::unique_ptr<netstack::Netstack> stack;
  wg::Device device(*clock, wg::DeviceOptions{},
                    wg::Device::Io{
                        .send = [&](const wg::Endpoint& to,
                                    std::span<const uint8_t> d) {
                          if (udp) udp->send(to, d);
                        },
                        .deliver = [&](std::span<const uint8_t> p) {
                          if (stack) stack->input(p);
                        },
                    });
  device.setPrivateKey(wg::generatePrivateKey());
  auto u = wg::UdpBind::open(io, 0, [&](const wg::Endpoint& from, std::span<uint8_t> d) {
    device.receive(from, d);
  });
  if (!u) {
    std::cerr << "wsa: " << u.error() << "\n";
    return 1;
  }
  udp = std::move(*u);
  netstack::Options nopts;
  for (const auto& a : found.client_addresses()) nopts.addresses.push_back(stripPrefix(a));
  auto n = netstack::Netstack::create(io, nopts,
                                      [&](std::span<const uint8_t> p) { device.send(p); });
  if (!n) {
    std::cerr << "wsa: " << n.error() << "\n";
    return 1;
  }
  stack = std::move(*n);

  // Coordinate: publish our node, open the tunnel, learn the agent's node.
  grpc::ClientContext cctx;
  control::prepareContext(cctx, token);
  auto rw = stub->Coordinate(&cctx);
  {
    ov::CoordinateRequest req;
    auto* node = req.mutable_update_self()->mutable_node();
    node->set_id(found.client_id());
    // No endpoints: we initiate, and the agent learns ours from the first packet.
    wg::describeNode(device.publicKey(),
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
  deadline.async_wait([&](std::error_code ec) {
    if (ec) return;
    failure = "could not reach agent \"" + agent + "\" over the overlay within " +
              std::to_string(connect_timeout.count()) + " s";
    io.stop();
  });
  bool have_node = false, agent_ready = false;
  asio::steady_timer ready_fallback(io);
  std::vector<std::unique_ptr<net::Listener>> listeners;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  auto startDial = [&] {
    if (dialing) return;
    dialing = true;
    ready_fallback.cancel();
    std::string to = stripPrefix(found.agent_addresses(0));
    if (!target.listen.empty()) {
      // Port forwarding: every local connection gets its own overlay connection.
      deadline.cancel();
      auto bound = net::listenStreams(
          io, target.listen, "port forward",
          [&, to](net::ByteStreamPtr local) {
            auto holder = std::make_shared<net::ByteStreamPtr>(std::move(local));
            stack->dial(to, port, [&, holder](Result<net::ByteStreamPtr> s) {
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
    stack->dial(to, port, [&, to](Result<net::ByteStreamPtr> s) {
      if (!s) {
        failure = "connect to " + agent + " port " + std::to_string(port) + ": " + s.error();
        io.stop();
        return;
      }
      deadline.cancel();
      log->info("connected to {} ({}) port {}", agent, to, port);
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
      auto peer = wg::peerFromNode(up.node());
      if (!peer) {
        log->warn("agent node: {}", peer.error());
        continue;
      }
      const wg::PeerConfig& pc = *peer;
      if (!pc.endpoint) {
        log->warn("agent node has no usable UDP endpoint yet");
        continue;
      }
      if (auto st = device.setPeer(pc); !st) {
        failure = st.error();
        io.stop();
        return;
      }
      log->info("agent node: key set, endpoint {}", pc.endpoint->toString());
      if (!have_node) {
        have_node = true;
        // The agent says when it has added us (ready_for_handshake); should that not come
        // (an agent that predates it), a grace period stands in for it.
        ready_fallback.expires_after(std::chrono::seconds(5));
        ready_fallback.async_wait([&](std::error_code ec) {
          if (ec) return;
          log->info("the agent did not say it was ready for our handshake within 5 s; dialing");
          startDial();
        });
      }
    }
    if (have_node && agent_ready) startDial();
  };
  std::thread reader([&] {
    ov::CoordinateResponse r;
    while (rw->Read(&r)) {
      asio::post(io, [&, r] { onResponse(r); });
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
  listeners.clear();
  stack.reset();
  for (int i = 0; i < 1000; ++i) {
    io.restart();
    if (io.poll() == 0) break;
  }
  cctx.TryCancel();
  reader.join();
  rw->Finish();
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
  forward_cmd->add_option("ports", spec,
                          "[LOCAL_ADDRESS:]LOCAL_PORT:REMOTE_PORT, or REMOTE_PORT (same port "
                          "locally); the local address defaults to 127.0.0.1")
      ->required();
  app.require_subcommand(1);
  WSA_CLI_PARSE(app, argc, argv);

  Target target;
  target.port = static_cast<uint16_t>(port);
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
    std::ifstream f(token_file);
    if (!f) {
      std::cerr << "wsa: --token-file " << token_file << ": " << std::strerror(errno) << "\n";
      return 2;
    }
    std::getline(f, token);
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
