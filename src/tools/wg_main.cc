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

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <prometheus/text_serializer.h>

#include "wg/device.h"
#include "wg/metrics.h"
#include "wg/tun.h"
#include "wg/uapi.h"
#include "wg/udp.h"
#include "wsa/common/clock.h"
#include "wsa/common/logging.h"
#include "wsa/http/server.h"
#include "wsa/version.h"

namespace {

int run(const std::string& ifname, int mtu, const std::string& uapi_dir,
        const std::string& metrics_listen) {
  using namespace wsa;
  auto log = logging::get("wsa-wg");
  asio::io_context io(1);
  auto clock = makeLoopClock(io);

  std::unique_ptr<wg::UdpBind> udp;
  std::unique_ptr<wg::Tun> tun;
  wg::DeviceOptions dopts;
  dopts.mtu = static_cast<size_t>(mtu);
  wg::Device device(*clock, dopts,
                    wg::Device::Io{
                        .send = [&](const wg::Endpoint& to,
                                    std::span<const uint8_t> d) {
                          if (udp) udp->send(to, d);
                        },
                        .deliver = [&](std::span<const uint8_t> p) {
                          if (tun) tun->write(p);
                        },
                    });

  auto on_datagram = [&](const wg::Endpoint& from, std::span<uint8_t> d) {
    device.receive(from, d);
  };
  int exit_code = 0;
  auto t = wg::Tun::open(
      io, ifname, mtu, [&](std::span<const uint8_t> p) { device.send(p); },
      [&](const std::string& error) {
        log->error("{}: {}; exiting", ifname, error);
        exit_code = 1;
        io.stop();
      });
  if (!t) {
    std::cerr << "wsa-wg: " << t.error() << "\n";
    return 1;
  }
  tun = std::move(*t);

  auto u = wg::UdpBind::open(io, 0, on_datagram);
  if (!u) {
    std::cerr << "wsa-wg: " << u.error() << "\n";
    return 1;
  }
  udp = std::move(*u);

  wg::UapiHooks hooks;
  hooks.listen_port = [&] { return udp ? udp->port() : uint16_t{0}; };
  hooks.set_listen_port = [&](uint16_t port) -> Status {
    if (udp && (port == udp->port() || port == 0)) return {};
    auto nb = wg::UdpBind::open(io, port, on_datagram);
    if (!nb) return makeError(nb.error());
    udp = std::move(*nb);
    log->info("{}: listening on UDP port {}", ifname, udp->port());
    return {};
  };

  std::error_code ec;
  std::filesystem::create_directories(uapi_dir, ec);
  ::chmod(uapi_dir.c_str(), 0755);
  std::string sock_path = uapi_dir + "/" + ifname + ".sock";
  auto uapi = wg::UapiServer::listen(io, sock_path, device, hooks);
  if (!uapi) {
    std::cerr << "wsa-wg: " << uapi.error() << "\n";
    return 1;
  }
  log->info("{}: up (MTU {}, UDP port {}), configure with `wg` through {}", ifname, mtu,
            udp->port(), sock_path);

  std::unique_ptr<http::Server> metrics;
  if (!metrics_listen.empty()) {
    http::Router router;
    router.addSync("GET", "/metrics", [&](http::Request&) {
      wg::MetricsSources src{&device, [&] { return udp.get(); }, [&] { return tun.get(); }};
      auto r = http::Response::text(
          200, prometheus::TextSerializer().Serialize(wg::collectMetrics(src, ifname)));
      r.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      return r;
    });
    metrics = std::make_unique<http::Server>(io, std::move(router));
    auto b = metrics->listen(metrics_listen);
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

  uapi->reset();
  ::unlink(sock_path.c_str());
  const auto& c = device.counters();
  log->info("{}: handshakes {}, rx {} datagrams, tx {} datagrams ({} dropped at the send queue), "
            "tun rx {} tx {} ({} dropped)",
            ifname, c.handshakes_completed, udp->stats().rx_datagrams, udp->stats().tx_datagrams,
            udp->stats().tx_dropped, tun->stats().rx_packets, tun->stats().tx_packets,
            tun->stats().tx_dropped);
  logging::flush();
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsa-wg " WSA_VERSION
               " — a userspace WireGuard interface (TUN + UDP), configured with `wg`"};
  std::string ifname, uapi_dir = "/var/run/wireguard", level = "info", metrics_listen;
  int mtu = 1420;
  bool foreground = true;
  app.add_option("interface", ifname, "Interface name (1 to 15 characters)")->required();
  app.add_flag("-f,--foreground", foreground, "Run in the foreground (always; for wireguard-go "
                                              "compatibility)");
  app.add_option("--mtu", mtu, "Interface MTU")->capture_default_str()->check(CLI::Range(576, 9000));
  app.add_option("--uapi-dir", uapi_dir, "Directory of the configuration socket")
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve Prometheus metrics on this address (host:port or unix:PATH), "
                 "e.g. 127.0.0.1:2114");
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  wsa::logging::Options lopts;
  lopts.level = level;
  if (auto st = wsa::logging::init(lopts); !st) {
    std::cerr << "wsa-wg: " << st.error() << "\n";
    return 2;
  }
  return run(ifname, mtu, uapi_dir, metrics_listen);
}
