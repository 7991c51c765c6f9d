// wsa-wg: our userspace WireGuard engine as a standalone interface, the counterpart of
// wireguard-go: it creates a TUN interface, serves WireGuard's configuration protocol on
// <uapi-dir>/<interface>.sock so the standard `wg` tool configures it, and carries the
// interface's packets over UDP. It is how we prove the engine against wireguard-go and measure
// it side by side; the agent embeds the same engine with a userspace TCP/IP stack instead of a
// TUN interface.
//
// Runs in the foreground. SIGTERM/SIGINT: remove the socket and exit 0. SIGUSR1: start a new
// handshake with every peer now (a forced rekey, for tests and operators).

#include <sys/stat.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "wsa/common/cli_parse.h"
#include "wsa/common/clock.h"
#include "wsa/common/logging.h"
#include "wsa/common/metrics.h"
#include "wsa/common/strings.h"
#include "wsa/http/server.h"
#include "wsa/netstack/forward.h"
#include "wsa/netstack/netstack.h"
#include "wsa/overlay/engine.h"
#include "wsa/version.h"
#include "wsa/wg/device.h"
#include "wsa/wg/tun.h"
#include "wsa/wg/udp.h"

namespace {

struct Config {
  std::string ifname;
  int mtu = 1420;
  std::string uapi_dir = "/var/run/wireguard";
  std::string metrics_listen;
  std::vector<std::string> netstack;  // addresses: userspace TCP/IP instead of a TUN interface
};

int run(const Config& cfg) {
  const std::string& ifname = cfg.ifname;
  const int mtu = cfg.mtu;
  using namespace wsa;
  auto log = logging::get("wsa-wg");
  asio::io_context io(1);
  auto clock = makeLoopClock(io);

  int exit_code = 0;
  overlay::EngineOptions eo;
  eo.name = ifname;
  eo.logger = "wsa-wg";
  eo.mtu = static_cast<size_t>(mtu);
  if (cfg.netstack.empty()) {
    eo.packets = overlay::EngineOptions::Packets::kTun;
    eo.tun_name = ifname;
    eo.on_tun_error = [&](const std::string& error) {
      log->error("{}: {}; exiting", ifname, error);
      exit_code = 1;
      io.stop();
    };
  } else {
    // No interface: our own TCP/IP stack answers on the addresses, and every TCP port is
    // forwarded to this machine's loopback (what the agent does for a workspace).
    eo.addresses = cfg.netstack;
    eo.forward_to_loopback = true;
  }
  std::error_code ec;
  std::filesystem::create_directories(cfg.uapi_dir, ec);
  ::chmod(cfg.uapi_dir.c_str(), 0755);
  std::string sock_path = cfg.uapi_dir + "/" + ifname + ".sock";
  eo.config_socket = sock_path;
  overlay::EnginePart failed = overlay::EnginePart::kNone;
  auto started = overlay::Engine::start(io, *clock, std::move(eo), &failed);
  if (!started) {
    if (failed == overlay::EnginePart::kPackets && !cfg.netstack.empty()) {
      std::cerr << "wsa-wg: --netstack: " << started.error() << "\n";
      return 2;
    }
    std::cerr << "wsa-wg: " << started.error() << "\n";
    return 1;
  }
  overlay::Engine& engine = **started;
  wg::Device& device = engine.device();
  log->info("{}: up (MTU {}, UDP port {}, {}), configure with `wg` through {}", ifname, mtu,
            engine.udpPort(),
            engine.stack() ? "userspace TCP/IP, TCP forwarded to the loopback" : "TUN", sock_path);

  std::unique_ptr<http::Server> metrics;
  if (!cfg.metrics_listen.empty()) {
    http::Router router;
    router.addSync("GET", "/metrics", [&](http::Request&) {
      metrics::Families families;
      engine.collectWgMetrics(families);
      auto r = http::Response::text(200, families.text());
      r.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      return r;
    });
    metrics = std::make_unique<http::Server>(io, std::move(router));
    auto b = metrics->listen(cfg.metrics_listen);
    if (!b) {
      std::cerr << "wsa-wg: --metrics-listen: " << b.error() << "\n";
      return 1;
    }
    log->info("{}: Prometheus metrics on http://{}/metrics", ifname, *b);
  }

  asio::signal_set stop(io, SIGTERM, SIGINT);
  stop.async_wait([&](std::error_code e, int sig) {
    if (e) return;
    log->info("{}: signal {}, shutting down", ifname, sig);
    io.stop();
  });
  asio::signal_set rekey(io, SIGUSR1);
  std::function<void()> wait_rekey = [&] {
    rekey.async_wait([&](std::error_code e, int) {
      if (e) return;
      for (const auto& p : device.peers()) device.initiateHandshake(p.public_key);
      log->info("{}: new handshake with every peer (SIGUSR1)", ifname);
      wait_rekey();
    });
  };
  wait_rekey();

  io.run();

  if (const auto* stack = engine.stack()) {
    const auto& ns = stack->stats();
    const auto& fs = engine.forwarder()->stats();
    log->info(
        "{}: userspace TCP/IP: {} accepted, {} refused at the limit; forwarded {} "
        "({} refused locally, {} bytes in, {} out)",
        ifname, ns.tcp_accepted, ns.tcp_refused, fs.connections, fs.refused, fs.bytes_to_local,
        fs.bytes_from_local);
  }
  // The configuration socket closes; the stack goes before the device it sends through (open
  // connections end with a reset); then the completions that causes run while the loop and
  // the device still exist.
  engine.shutdown();
  ::unlink(sock_path.c_str());
  overlay::Engine::drainCompletions(io);
  const auto& c = device.counters();
  const wg::UdpBind& udp = *engine.udp();
  const wg::Tun* tun = engine.tun();
  log->info(
      "{}: handshakes {}, rx {} datagrams, tx {} datagrams ({} dropped at the send queue), "
      "tun rx {} tx {} ({} dropped)",
      ifname, c.handshakes_completed, udp.stats().rx_datagrams, udp.stats().tx_datagrams,
      udp.stats().tx_dropped, tun ? tun->stats().rx_packets : 0, tun ? tun->stats().tx_packets : 0,
      tun ? tun->stats().tx_dropped : 0);
  logging::flush();
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsa-wg " WSA_VERSION
               " — a userspace WireGuard interface (TUN + UDP), configured with `wg`"};
  Config cfg;
  std::string level = "info", netstack;
  bool foreground = true;
  app.add_option("interface", cfg.ifname, "Interface name (1 to 15 characters)")->required();
  app.add_flag("-f,--foreground", foreground,
               "Run in the foreground (always; for wireguard-go "
               "compatibility)");
  app.add_option("--mtu", cfg.mtu, "Interface MTU")
      ->capture_default_str()
      ->check(CLI::Range(576, 9000));
  app.add_option("--uapi-dir", cfg.uapi_dir, "Directory of the configuration socket")
      ->capture_default_str();
  app.add_option("--metrics-listen", cfg.metrics_listen,
                 "Serve Prometheus metrics on this address (host:port or unix:PATH), "
                 "e.g. 127.0.0.1:2114");
  app.add_option("--netstack", netstack,
                 "No TUN interface: answer on these overlay addresses (comma-separated, e.g. "
                 "100.64.0.1,fd7a:115c:a1e0::1) with the userspace TCP/IP stack and forward "
                 "every TCP port to this machine's loopback");
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  WSA_CLI_PARSE(app, argc, argv);

  for (auto& a : wsa::split(netstack, ',')) {
    if (!a.empty()) cfg.netstack.push_back(std::move(a));
  }
  wsa::logging::Options lopts;
  lopts.level = level;
  if (auto st = wsa::logging::init(lopts); !st) {
    std::cerr << "wsa-wg: " << st.error() << "\n";
    return 2;
  }
  return run(cfg);
}
