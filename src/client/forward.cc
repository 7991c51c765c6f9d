#include <array>
#include <asio/ip/udp.hpp>
#include <iostream>
#include <optional>
#include <vector>

#include "client/commands.h"
#include "client/session.h"
#include "wsa/common/logging.h"
#include "wsa/net/address.h"
#include "wsa/net/flow_table.h"
#include "wsa/net/listener.h"
#include "wsa/net/splice.h"
#include "wsa/netstack/netstack.h"

namespace wsa::client {

namespace {

// Every local connection gets its own overlay connection.
class Forward final : public Command {
 public:
  explicit Forward(const ForwardSpec& spec) : spec_(spec), log_(logging::get("wsa")) {}

  void start(Session& session) override {
    session.reached();  // the listener is what the user waits for
    auto bound = net::listenStreams(
        session.io(), spec_.listen, "port forward",
        [this, &session](net::ByteStreamPtr local) { serve(session, std::move(local)); },
        listeners_);
    if (!bound) return session.fail("forward: " + bound.error());
    std::cerr << "wsa: forwarding " << *bound << " to " << session.agentName() << " port "
              << spec_.remote_port << " (Ctrl-C stops)" << std::endl;
    session.finishOnSignal();
  }
  void stop() override { listeners_.clear(); }

 private:
  void serve(Session& session, net::ByteStreamPtr local) {
    auto holder = std::make_shared<net::ByteStreamPtr>(std::move(local));
    session.dial(spec_.remote_port, [this, &session, holder](Result<net::ByteStreamPtr> s) {
      if (!s) {
        log_->warn("{} port {}: {}", session.agentName(), spec_.remote_port, s.error());
        (*holder)->abort();
        return;
      }
      net::splice(std::move(*s), std::move(*holder), nullptr);
    });
  }

  ForwardSpec spec_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
};

// `--udp`: one local UDP socket; each local source address is a flow (its own overlay UDP
// flow, so its own source port at the agent) to the agent's port, and what comes back on it
// goes to that source. Bounded by the flow table (spec.max_flows, spec.idle_timeout); no
// queue: a datagram either socket does not take at once is dropped and counted.
class UdpForward final : public Command {
 public:
  explicit UdpForward(const ForwardSpec& spec) : spec_(spec), log_(logging::get("wsa")) {}

  void start(Session& session) override {
    session_ = &session;
    session.reached();
    auto la = net::parseListenAddress(spec_.listen);
    if (!la) return session.fail("forward --udp: " + la.error());
    std::error_code ec;
    auto addr = asio::ip::make_address(la->host.empty() ? "127.0.0.1" : la->host, ec);
    if (ec) return session.fail("forward --udp: \"" + la->host + "\" is not an IP address");
    asio::ip::udp::endpoint at(addr, la->port);
    socket_.emplace(session.io());
    socket_->open(at.protocol(), ec);
    if (!ec) socket_->bind(at, ec);
    if (!ec) socket_->non_blocking(true, ec);
    if (ec) {
      return session.fail("forward --udp: cannot bind " + net::joinHostPort(la->host, la->port) +
                          ": " + ec.message());
    }
    flows_.emplace(session.clock(),
                   net::FlowTableOptions{spec_.max_flows,
                                         std::chrono::duration_cast<Duration>(spec_.idle_timeout)});
    auto bound = socket_->local_endpoint();
    std::cerr << "wsa: forwarding UDP "
              << net::joinHostPort(bound.address().to_string(), bound.port()) << " to "
              << session.agentName() << " port " << spec_.remote_port << " (Ctrl-C stops)"
              << std::endl;
    session.finishOnSignal();
    receive();
  }

  void stop() override {
    if (!flows_) return;
    const auto& f = flows_->stats();
    log_->info(
        "UDP forward: {} flows ({} evicted at the bound of {}, {} expired), {} datagrams up "
        "({} bytes), {} down ({} bytes), {} dropped",
        f.opened, f.evicted, spec_.max_flows, f.expired, up_, up_bytes_, down_, down_bytes_,
        dropped_);
    flows_->clear();
    std::error_code ignored;
    socket_->close(ignored);
  }

 private:
  struct Flow {
    std::unique_ptr<netstack::UdpFlow> overlay;
  };

  void receive() {
    socket_->async_receive_from(asio::buffer(buf_), from_, [this](std::error_code ec, size_t n) {
      if (ec == asio::error::operation_aborted || !socket_->is_open()) return;
      if (!ec) fromLocal(n);  // else (ICMP for a local source gone, say): carry on
      receive();
    });
  }

  void fromLocal(size_t n) {
    std::string key = net::joinHostPort(from_.address().to_string(), from_.port());
    Flow* flow = flows_->find(key);
    if (flow == nullptr) {
      auto o = session_->openUdp(
          spec_.remote_port,
          [this, key, to = from_](std::span<const uint8_t> d) { toLocal(key, to, d); });
      if (!o) {
        dropped_++;
        log_->warn("{} UDP port {}: {}", session_->agentName(), spec_.remote_port, o.error());
        return;
      }
      flow = &flows_->insert(key, Flow{std::move(*o)});
      log_->debug("UDP flow from {} opened", key);
    }
    if (auto st = flow->overlay->send({buf_.data(), n}); !st) {
      dropped_++;
      log_->debug("UDP flow from {}: {}", key, st.error());
      return;
    }
    up_++;
    up_bytes_ += n;
  }

  void toLocal(const std::string& key, const asio::ip::udp::endpoint& to,
               std::span<const uint8_t> d) {
    flows_->find(key);  // used
    std::error_code ec;
    socket_->send_to(asio::buffer(d.data(), d.size()), to, 0, ec);
    if (ec) {
      dropped_++;
      return;
    }
    down_++;
    down_bytes_ += d.size();
  }

  ForwardSpec spec_;
  std::shared_ptr<spdlog::logger> log_;
  Session* session_ = nullptr;
  std::optional<asio::ip::udp::socket> socket_;
  std::optional<net::FlowTable<Flow>> flows_;
  std::array<uint8_t, 64 * 1024> buf_{};
  asio::ip::udp::endpoint from_;
  uint64_t up_ = 0, up_bytes_ = 0, down_ = 0, down_bytes_ = 0, dropped_ = 0;
};

}  // namespace

Exit runForward(Session& session, const ForwardSpec& spec) {
  if (spec.udp) {
    UdpForward forward(spec);
    return session.run(forward);
  }
  Forward forward(spec);
  return session.run(forward);
}

}  // namespace wsa::client
