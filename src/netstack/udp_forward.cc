#include "wsa/netstack/udp_forward.h"

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <map>
#include <vector>

#include "wsa/common/logging.h"
#include "wsa/net/address.h"

namespace wsa::netstack {

namespace {

struct Flow {
  Flow(asio::io_context& io, UdpInfo i, std::string k)
      : info(std::move(i)), key(std::move(k)), socket(io) {}
  UdpInfo info;
  std::string key;
  asio::ip::udp::socket socket;
  bool closed = false;
};
using FlowPtr = std::shared_ptr<Flow>;

}  // namespace

class UdpForwarder::Impl : public std::enable_shared_from_this<UdpForwarder::Impl> {
 public:
  Impl(asio::io_context& io, Clock& clock, Options o, Hooks hooks)
      : io_(io),
        opts_(o),
        hooks_(std::move(hooks)),
        table_(clock, net::FlowTableOptions{o.max_flows, o.idle_timeout},
               [this](const std::string&, FlowPtr& f, net::FlowEnd why) { ended(f, why); }),
        buf_(64 * 1024),
        log_(logging::get("forward")) {}

  void forward(const UdpInfo& info, std::span<const uint8_t> payload) {
    std::string key = info.remote() + "|" + net::joinHostPort(info.local_address, info.local_port);
    FlowPtr* found = table_.find(key);
    if (found == nullptr) {
      found = open(info, key);
      if (found == nullptr) return;
    }
    Flow& f = **found;
    std::error_code ec;
    f.socket.send(asio::buffer(payload.data(), payload.size()), 0, ec);
    if (!ec) {
      stats_.datagrams_to_local++;
      stats_.bytes_to_local += payload.size();
    } else if (ec == asio::error::connection_refused) {
      stats_.dropped_port_closed++;
    } else {
      stats_.dropped_local_busy++;
    }
  }

  FlowPtr* open(const UdpInfo& info, const std::string& key) {
    auto f = std::make_shared<Flow>(io_, info, key);
    asio::ip::udp::endpoint to(info.v6 ? asio::ip::address(asio::ip::address_v6::loopback())
                                       : asio::ip::address(asio::ip::address_v4::loopback()),
                               info.local_port);
    std::error_code ec;
    f->socket.open(to.protocol(), ec);
    if (!ec) f->socket.non_blocking(true, ec);
    if (!ec) f->socket.connect(to, ec);
    if (ec) {
      stats_.dropped_no_socket++;
      log_->debug("overlay UDP port {}: no loopback socket ({})", info.local_port, ec.message());
      if (per_port_.count(info.local_port) == 0 && hooks_.port_idle && !stopping_) {
        hooks_.port_idle(info.local_port);
      }
      return nullptr;
    }
    // Counted before the insert: evicting the port's only other flow must not release it.
    per_port_[info.local_port]++;
    table_.insert(key, f);
    wait(f);
    return table_.peek(key);
  }

  void wait(const FlowPtr& f) {
    f->socket.async_wait(asio::socket_base::wait_read,
                         [weak = weak_from_this(), f](std::error_code ec) {
                           auto self = weak.lock();
                           if (!self || f->closed || ec) return;
                           self->readable(f);
                         });
  }

  void readable(const FlowPtr& f) {
    for (size_t i = 0; i < opts_.max_batch; ++i) {
      std::error_code ec;
      size_t n = f->socket.receive(asio::buffer(buf_), 0, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec == asio::error::connection_refused) {  // an earlier datagram found no listener
        stats_.dropped_port_closed++;
        continue;
      }
      if (ec) {
        stats_.local_errors++;
        log_->debug("overlay UDP flow {}: {}", f->key, ec.message());
        table_.erase(f->key);
        return;
      }
      stats_.datagrams_from_local++;
      stats_.bytes_from_local += n;
      table_.find(f->key);  // used
      if (!hooks_.reply || !hooks_.reply(f->info, {buf_.data(), n})) {
        stats_.dropped_overlay_send++;
      }
      if (f->closed) return;
    }
    wait(f);
  }

  void ended(FlowPtr& f, net::FlowEnd) {
    f->closed = true;
    std::error_code ignored;
    f->socket.close(ignored);
    auto it = per_port_.find(f->info.local_port);
    if (it == per_port_.end() || --it->second > 0) return;
    per_port_.erase(it);
    if (hooks_.port_idle && !stopping_) hooks_.port_idle(f->info.local_port);
  }

  UdpForwardStats stats() const {
    UdpForwardStats s = stats_;
    s.flows = table_.stats();
    s.flows_open = table_.size();
    return s;
  }

  asio::io_context& io_;
  Options opts_;
  Hooks hooks_;
  net::FlowTable<FlowPtr> table_;
  std::map<uint16_t, size_t> per_port_;  // open flows per overlay port
  std::vector<uint8_t> buf_;             // one datagram read from a loopback socket
  UdpForwardStats stats_;
  bool stopping_ = false;
  std::shared_ptr<spdlog::logger> log_;
};

UdpForwarder::UdpForwarder(asio::io_context& io, Clock& clock, Options options, Hooks hooks)
    : impl_(std::make_shared<Impl>(io, clock, options, std::move(hooks))) {}

UdpForwarder::~UdpForwarder() {
  impl_->stopping_ = true;
  impl_->table_.clear();
}

void UdpForwarder::forward(const UdpInfo& info, std::span<const uint8_t> payload) {
  impl_->forward(info, payload);
}

UdpForwardStats UdpForwarder::stats() const {
  return impl_->stats();
}

}  // namespace wsa::netstack
