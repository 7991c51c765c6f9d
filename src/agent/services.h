#pragma once
// The workspace services the agent offers to people: SSH, reconnecting PTY, speed test and the
// HTTP API. Today each is served on an optional local listener (--ssh-listen, --pty-listen,
// --speedtest-listen, --api-listen); the overlay will hand its streams for ports 1/22, 2, 3 and
// 4 to the same servers. Owns the servers, keeps the session context they need current, and
// feeds their counts into stats and metrics.
//
// The services see the agent only as a ServiceHost, and the agent drives them only as an
// AgentExtension (main.cc registers them): the dependency goes one way.

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "agent/extension.h"
#include "agent/overlay.h"
#include "agent/service_host.h"
#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/common/worker.h"
#include "wsa/rpty/rpty.h"
#include "wsa/speedtest/speedtest.h"
#include "wsa/ssh/ssh_server.h"

namespace asio {
class io_context;
}
namespace wsa::http {
class Server;
}
namespace wsa::metrics {
class Families;
}

namespace wsa::agent {

class AgentMetrics;

struct ServicesConfig {
  ssh::SshServerOptions ssh;
  std::string ssh_listen;
  rpty::Options rpty;
  std::string pty_listen;
  speedtest::ServerOptions speedtest;
  std::string speedtest_listen;
  std::string api_listen;
  // --pty-listen and --api-listen serve without authentication: only loopback addresses and
  // unix sockets unless this is set.
  bool allow_remote_unauthenticated = false;
  std::string log_file;
  // The overlay starts when a manifest assigns overlay addresses (unless disabled).
  OverlayOptions overlay;
};

struct BoundServices {
  std::string ssh, pty, speedtest, api;  // "" when not listening
  std::string ssh_host_key;              // SHA256 fingerprint
};

class Services final : public AgentExtension {
 public:
  static Result<std::unique_ptr<Services>> create(asio::io_context& io, Clock& clock,
                                                  ServiceHost& host, AgentMetrics& metrics,
                                                  Worker& worker, ServicesConfig config);
  ~Services() override;

  // Opens the configured listeners. `own_ports` are the agent's other listeners (metrics,
  // debug), hidden from the listening-ports API along with these.
  Result<BoundServices> listen(const std::set<uint16_t>& own_ports);
  void shutdown();

  // AgentExtension.
  void stopAccepting() override;
  void contextChanged() override { publishContext(); }
  // The overlay's coordination ("coordinate", kRemain), once the overlay is up.
  std::vector<ConnectionRoutine> routinesFor(AgentApi& api) override;
  // SSH and reconnecting-PTY session counts.
  void fillStats(v1::Stats* stats) override;
  // /debug/overlay (null before the overlay is up).
  std::string debugOverlay() const;

  ssh::SshServer& ssh() { return *ssh_; }
  rpty::Server& rpty() { return *rpty_; }
  speedtest::Server& speedtest() { return *speedtest_; }

 private:
  Services(asio::io_context& io, Clock& clock, ServiceHost& host, AgentMetrics& metrics,
           Worker& worker, ServicesConfig config);
  // The services' collector: SSH and reconnecting PTY sessions and connections.
  void collectMetrics(metrics::Families& out) const;
  // Gives the SSH server the new session context; starts the overlay once the manifest assigns
  // addresses.
  void publishContext();
  void maybeStartOverlay();
  void serveOverlay(uint16_t port, net::ByteStreamPtr stream, std::string peer);
  Result<term::ChildSpec> ptyCommand(const std::string& command, term::PtySize size) const;

  asio::io_context& io_;
  Clock& clock_;
  ServiceHost& host_;
  AgentMetrics& metrics_;
  Worker& worker_;
  ServicesConfig config_;
  std::unique_ptr<ssh::SshServer> ssh_;
  std::unique_ptr<rpty::Server> rpty_;
  std::unique_ptr<speedtest::Server> speedtest_;
  std::shared_ptr<std::set<uint16_t>> hidden_ports_;
  std::unique_ptr<http::Server> api_;
  std::shared_ptr<Overlay> overlay_;  // shared: the overlay's collector holds a weak_ptr
  bool overlay_failed_ = false;
  bool accepting_ = true;
};

}  // namespace wsa::agent
