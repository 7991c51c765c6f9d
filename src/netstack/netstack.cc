#include "wsa/netstack/netstack.h"

#include <sodium.h>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <set>

#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"
#include "wsa/net/address.h"
#include "wsa_lwip_hooks.h"

// --- what lwIP needs from its platform ----------------------------------------------------------

extern "C" {

u32_t sys_now(void) {
  using namespace std::chrono;
  return static_cast<u32_t>(
      duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

unsigned int wsa_lwip_rand(void) {
  return randombytes_random();
}

void wsa_lwip_assert(const char* message, const char* file, int line) {
  std::fprintf(stderr, "lwIP assertion failed: %s (%s:%d)\n", message, file, line);
  std::abort();
}

// Initial sequence numbers are random (not guessable by another peer).
u32_t wsa_lwip_tcp_isn(const ip_addr_t*, u16_t, const ip_addr_t*, u16_t) {
  return randombytes_random();
}

}  // extern "C"

namespace wsa::netstack {

namespace {

Netstack::Impl* g_instance = nullptr;

std::string formatAddress(const ip_addr_t& addr) {
  char buf[IPADDR_STRLEN_MAX];
  ipaddr_ntoa_r(&addr, buf, sizeof(buf));
  for (char* c = buf; *c != '\0'; ++c) *c = static_cast<char>(std::tolower(*c));  // lwIP: "FD7A::
  return buf;
}

std::string formatEndpoint(const ip_addr_t& addr, uint16_t port) {
  return net::joinHostPort(formatAddress(addr), port);
}

// The largest UDP payload we send (IPv4's limit, so that one bound holds for both).
constexpr size_t kMaxUdpPayload = 65507;

// An address as it stands in an IP header.
ip_addr_t ipFromBytes(const uint8_t* bytes, bool v4) {
  ip_addr_t a;
  if (v4) {
    IP_ADDR4(&a, bytes[0], bytes[1], bytes[2], bytes[3]);
  } else {
    IP_ADDR6(&a, 0, 0, 0, 0);
    std::memcpy(ip_2_ip6(&a)->addr, bytes, 16);
  }
  return a;
}

std::error_code errorFromLwip(err_t err) {
  switch (err) {
    case ERR_RST:
      return asio::error::connection_reset;
    case ERR_ABRT:
      return asio::error::connection_aborted;
    case ERR_CLSD:
      return asio::error::broken_pipe;
    case ERR_TIMEOUT:
      return asio::error::timed_out;
    case ERR_RTE:
      return asio::error::network_unreachable;
    case ERR_MEM:
      return asio::error::no_buffer_space;
    default:
      return asio::error::connection_aborted;
  }
}

}  // namespace

std::string UdpInfo::remote() const {
  return net::joinHostPort(remote_address, remote_port);
}

struct Conn;

struct UdpFlow::State : std::enable_shared_from_this<UdpFlow::State> {
  Netstack::Impl* stack = nullptr;  // null once the stack is gone
  udp_pcb* pcb = nullptr;           // null once closed
  uint16_t port = 0;
  OnDatagram on_datagram;
};

class Netstack::Impl {
 public:
  Impl(asio::io_context& io, Options o, Output out)
      : io_(io), opts_(std::move(o)), output_(std::move(out)), timer_(io) {}

  struct Listener {
    Impl* stack;
    tcp_pcb* pcb;
    uint16_t port;
    bool forwarded;
    Accept on_accept;
  };

  // --- packets ---

  static err_t emit(netif* n, pbuf* p) {
    auto* self = static_cast<Impl*>(n->state);
    self->stats_.tx_packets++;
    if (p->next == nullptr) {  // one buffer (the usual case): no copy
      self->output_({static_cast<const uint8_t*>(p->payload), p->len});
      return ERR_OK;
    }
    self->out_buf_.resize(p->tot_len);
    pbuf_copy_partial(p, self->out_buf_.data(), p->tot_len, 0);
    self->output_({self->out_buf_.data(), self->out_buf_.size()});
    return ERR_OK;
  }
  static err_t outputV4(netif* n, pbuf* p, const ip4_addr_t*) { return emit(n, p); }
  static err_t outputV6(netif* n, pbuf* p, const ip6_addr_t*) { return emit(n, p); }

  static err_t netifInit(netif* n) {
    auto* self = static_cast<Impl*>(n->state);
    n->name[0] = 'o';
    n->name[1] = 'v';
    n->output = outputV4;
    n->output_ip6 = outputV6;
    n->mtu = self->opts_.mtu;
    n->flags = 0;  // point-to-point: no ARP, no broadcast
    return ERR_OK;
  }

  void input(std::span<const uint8_t> pkt) {
    int version = pkt.empty() ? 0 : pkt[0] >> 4;
    if (pkt.size() > 0xffff ||
        !((version == 4 && pkt.size() >= 20) || (version == 6 && pkt.size() >= 40))) {
      stats_.rx_invalid++;
      return;
    }
    if (maybeForward(pkt)) {
      kick();
      return;  // held until the gate decides
    }
    if (!admitUdp(pkt)) return;
    deliver(pkt);
  }

  // Whether the packet's destination is one of our addresses.
  bool isOurs(std::span<const uint8_t> pkt) {
    if ((pkt[0] >> 4) == 4) {
      ip4_addr_t dst;
      std::memcpy(&dst.addr, &pkt[16], 4);
      return ip4_addr_cmp(&dst, netif_ip4_addr(&nif_));
    }
    for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; ++i) {
      if (!ip6_addr_isvalid(netif_ip6_addr_state(&nif_, i))) continue;
      if (std::memcmp(&pkt[24], netif_ip6_addr(&nif_, i)->addr, 16) == 0) return true;
    }
    return false;
  }

  // A UDP datagram for one of our addresses, to a port without a socket of its own: with a
  // UDP forwarder, the port gets the forwarder's socket now (within max_forwarded_udp_ports).
  // Later fragments pass (lwIP reassembles; the first fragment, with the header, decides).
  // Returns false when the datagram is to be dropped.
  bool admitUdp(std::span<const uint8_t> pkt) {
    if (!udp_forwarder_) return true;
    size_t udp_off = 0;
    if ((pkt[0] >> 4) == 4) {
      if (pkt[9] != 17) return true;
      if (((pkt[6] & 0x1f) << 8 | pkt[7]) != 0) return true;  // not the first fragment
      udp_off = static_cast<size_t>(pkt[0] & 0x0f) * 4;
    } else {
      uint8_t next = pkt[6];
      udp_off = 40;
      if (next == 44) {  // a fragment header
        if (pkt.size() < 48) return true;
        if (((pkt[42] << 8 | pkt[43]) & 0xfff8) != 0) return true;  // not the first fragment
        next = pkt[40];
        udp_off = 48;
      }
      if (next != 17) return true;
    }
    if (pkt.size() < udp_off + 8 || !isOurs(pkt)) return true;
    auto port = static_cast<uint16_t>(pkt[udp_off + 2] << 8 | pkt[udp_off + 3]);
    if (udp_ports_.count(port) != 0 || udp_flows_.count(port) != 0) return true;
    if (stats_.udp_forwarded_ports >= opts_.max_forwarded_udp_ports ||
        !openUdpPort(port, nullptr, true)) {
      stats_.udp_port_refused++;
      return false;
    }
    stats_.udp_forwarded_ports++;
    return true;
  }

  void deliver(std::span<const uint8_t> pkt) {
    pbuf* p = pbuf_alloc(PBUF_RAW, static_cast<u16_t>(pkt.size()), PBUF_RAM);
    if (p == nullptr) {
      stats_.rx_invalid++;
      return;
    }
    std::memcpy(p->payload, pkt.data(), pkt.size());
    stats_.rx_packets++;
    if (nif_.input(p, &nif_) != ERR_OK) {
      pbuf_free(p);
      stats_.rx_invalid++;
    }
    kick();
  }

  // A SYN for one of our addresses, to a port without a listener of its own: the forwarder's.
  // With a gate, the SYN is held until the gate admits it (then a listener exists and lwIP
  // gets the SYN) or refuses it (then we answer with a reset: "connection refused"); without
  // one, a listener is opened at once. Returns whether the packet is held.
  bool maybeForward(std::span<const uint8_t> pkt) {
    if (!forwarder_) return false;
    size_t tcp_off = 0;
    int version = pkt[0] >> 4;
    if (version == 4) {
      if (pkt.size() < 20 || pkt[9] != 6) return false;
      tcp_off = static_cast<size_t>(pkt[0] & 0x0f) * 4;
      ip4_addr_t dst;
      std::memcpy(&dst.addr, &pkt[16], 4);
      if (!ip4_addr_cmp(&dst, netif_ip4_addr(&nif_))) return false;
    } else if (version == 6) {
      if (pkt.size() < 40 || pkt[6] != 6) return false;  // TCP right after the fixed header only
      tcp_off = 40;
      bool ours = false;
      for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; ++i) {
        if (!ip6_addr_isvalid(netif_ip6_addr_state(&nif_, i))) continue;
        ours = ours || std::memcmp(&pkt[24], netif_ip6_addr(&nif_, i)->addr, 16) == 0;
      }
      if (!ours) return false;
    } else {
      return false;
    }
    if (pkt.size() < tcp_off + 20) return false;
    uint8_t flags = pkt[tcp_off + 13];
    if ((flags & 0x02) == 0 || (flags & 0x10) != 0) return false;  // SYN without ACK
    uint16_t port = static_cast<uint16_t>(pkt[tcp_off + 2] << 8 | pkt[tcp_off + 3]);
    auto l = listeners_.find(port);
    if (l != listeners_.end() && !l->second->forwarded) return false;  // a service of our own
    if (!gate_) {
      if (l == listeners_.end()) openForwardedListener(port);
      return false;
    }
    // Gated: one decision per connection (SYN retransmissions while deciding are dropped; a
    // SYN of a connection already admitted goes straight to lwIP).
    size_t addr_len = version == 4 ? 4 : 16;
    const uint8_t* src = &pkt[version == 4 ? 12 : 8];
    std::string key(reinterpret_cast<const char*>(src), addr_len);
    key.append(reinterpret_cast<const char*>(&pkt[tcp_off]), 4);  // source and destination port
    auto now = std::chrono::steady_clock::now();
    if (auto a = admitted_.find(key); a != admitted_.end()) {
      if (now < a->second) return false;
      admitted_.erase(a);
    }
    if (held_.count(key) != 0) return true;
    if (held_.size() >= kMaxHeld) {
      stats_.forwarded_ports_refused++;
      sendReset(pkt, tcp_off);
      return true;
    }
    held_[key] = std::vector<uint8_t>(pkt.begin(), pkt.end());
    ip_addr_t remote = ipFromBytes(src, version == 4);
    uint16_t sport = static_cast<uint16_t>(pkt[tcp_off] << 8 | pkt[tcp_off + 1]);
    ConnectionInfo info{formatEndpoint(remote, sport), "", port};
    gate_(info, [this, alive = alive_, key, port](bool admit) {
      asio::post(io_, [this, alive, key, port, admit] {
        if (!*alive) return;
        decide(key, port, admit);
      });
    });
    return true;
  }

  // A listener of the forwarder's for `port`, within max_forwarded_ports (refusals counted).
  bool openForwardedListener(uint16_t port) {
    if (stats_.forwarded_ports >= opts_.max_forwarded_ports) {
      stats_.forwarded_ports_refused++;
      return false;
    }
    if (!openListener(port, forwarder_, true)) return false;
    stats_.forwarded_ports++;
    return true;
  }

  void decide(const std::string& key, uint16_t port, bool admit) {
    auto it = held_.find(key);
    if (it == held_.end()) return;
    std::vector<uint8_t> syn = std::move(it->second);
    held_.erase(it);
    size_t tcp_off = (syn[0] >> 4) == 4 ? static_cast<size_t>(syn[0] & 0x0f) * 4 : 40;
    if (admit && listeners_.count(port) == 0) admit = openForwardedListener(port);
    if (!admit) {
      sendReset(syn, tcp_off);
      return;
    }
    if (admitted_.size() >= kMaxHeld * 4) {
      auto now = std::chrono::steady_clock::now();
      for (auto a = admitted_.begin(); a != admitted_.end();) {
        a = now >= a->second ? admitted_.erase(a) : std::next(a);
      }
    }
    if (admitted_.size() < kMaxHeld * 4) {
      admitted_[key] = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    }
    deliver(syn);
  }

  // "Connection refused": lwIP's own RST|ACK for the SYN (what it sends for a closed port),
  // from the address and port the SYN was sent to.
  void sendReset(std::span<const uint8_t> syn, size_t tcp_off) {
    bool v4 = (syn[0] >> 4) == 4;
    ip_addr_t local = ipFromBytes(&syn[v4 ? 16 : 24], v4);
    ip_addr_t remote = ipFromBytes(&syn[v4 ? 12 : 8], v4);
    const uint8_t* tcp = syn.data() + tcp_off;
    auto be16 = [](const uint8_t* b) { return static_cast<u16_t>(b[0] << 8 | b[1]); };
    u32_t seq = static_cast<u32_t>(tcp[4]) << 24 | static_cast<u32_t>(tcp[5]) << 16 |
                static_cast<u32_t>(tcp[6]) << 8 | tcp[7];
    stats_.tcp_refused_by_gate++;
    tcp_rst(nullptr, 0, seq + 1, &local, &remote, be16(tcp + 2), be16(tcp));
  }

  // --- UDP ---

  struct UdpPort {
    Impl* stack;
    udp_pcb* pcb;
    uint16_t port;
    bool forwarded;
    std::shared_ptr<UdpReceive> on_datagram;  // a listener's (the forwarder's is the stack's)
  };

  Status openUdpPort(uint16_t port, std::shared_ptr<UdpReceive> cb, bool forwarded) {
    udp_pcb* pcb = udp_new_ip_type(IPADDR_TYPE_ANY);
    if (pcb == nullptr) return makeError("out of memory for a UDP socket");
    if (udp_bind(pcb, IP_ANY_TYPE, port) != ERR_OK) {
      udp_remove(pcb);
      return makeError("UDP port " + std::to_string(port) + " of the overlay is already in use");
    }
    auto up = std::make_unique<UdpPort>(UdpPort{this, pcb, port, forwarded, std::move(cb)});
    udp_recv(pcb, onUdpPort, up.get());
    udp_ports_[port] = std::move(up);
    return {};
  }

  void closeUdpPort(uint16_t port) {
    auto it = udp_ports_.find(port);
    if (it == udp_ports_.end()) return;
    udp_recv(it->second->pcb, nullptr, nullptr);
    udp_remove(it->second->pcb);
    if (it->second->forwarded) stats_.udp_forwarded_ports--;
    udp_ports_.erase(it);
  }

  // The datagram in one piece: the pbuf's own memory when it is one buffer, else a copy.
  std::span<const uint8_t> flatten(pbuf* p) {
    if (p->next == nullptr) return {static_cast<const uint8_t*>(p->payload), p->len};
    udp_buf_.resize(p->tot_len);
    pbuf_copy_partial(p, udp_buf_.data(), p->tot_len, 0);
    return {udp_buf_.data(), udp_buf_.size()};
  }

  // The receive callbacks may close their own socket: what they need is held here.
  static void onUdpPort(void* arg, udp_pcb*, pbuf* p, const ip_addr_t* addr, u16_t port) {
    auto* up = static_cast<UdpPort*>(arg);
    if (up == nullptr || p == nullptr) {
      if (p != nullptr) pbuf_free(p);
      return;
    }
    Impl* self = up->stack;
    std::shared_ptr<UdpReceive> cb = up->forwarded ? self->udp_forwarder_ : up->on_datagram;
    UdpInfo info{formatAddress(*addr), port, formatAddress(*ip_current_dest_addr()), up->port,
                 IP_IS_V6(addr)};
    self->stats_.udp_rx_datagrams++;
    if (cb && *cb) (*cb)(info, self->flatten(p));
    pbuf_free(p);
  }

  static void onUdpFlow(void* arg, udp_pcb*, pbuf* p, const ip_addr_t*, u16_t) {
    auto* st = static_cast<UdpFlow::State*>(arg);
    if (st == nullptr || p == nullptr || st->stack == nullptr) {
      if (p != nullptr) pbuf_free(p);
      return;
    }
    auto keep = st->shared_from_this();
    Impl* self = st->stack;
    self->stats_.udp_rx_datagrams++;
    if (st->on_datagram) st->on_datagram(self->flatten(p));
    pbuf_free(p);
  }

  // One datagram out through `pcb`; with `src`, from that address (else the pcb is connected).
  Status sendThrough(udp_pcb* pcb, std::span<const uint8_t> payload, const ip_addr_t* dst,
                     uint16_t dst_port, const ip_addr_t* src) {
    if (payload.size() > kMaxUdpPayload) {
      stats_.udp_send_errors++;
      return makeError("a UDP datagram of " + std::to_string(payload.size()) +
                       " bytes is larger than " + std::to_string(kMaxUdpPayload));
    }
    pbuf* p = pbuf_alloc(PBUF_TRANSPORT, static_cast<u16_t>(payload.size()), PBUF_RAM);
    if (p == nullptr) {
      stats_.udp_send_errors++;
      return makeError("out of memory for a UDP datagram");
    }
    if (!payload.empty()) std::memcpy(p->payload, payload.data(), payload.size());
    err_t e =
        src != nullptr ? udp_sendto_if_src(pcb, p, dst, dst_port, &nif_, src) : udp_send(pcb, p);
    pbuf_free(p);
    if (e != ERR_OK) {
      stats_.udp_send_errors++;
      return makeError("sending a UDP datagram over the overlay failed (lwIP error " +
                       std::to_string(e) + ")");
    }
    stats_.udp_tx_datagrams++;
    return {};
  }

  Status sendUdp(const UdpInfo& flow, std::span<const uint8_t> payload) {
    auto it = udp_ports_.find(flow.local_port);
    if (it == udp_ports_.end()) {
      stats_.udp_send_errors++;
      return makeError("overlay UDP port " + std::to_string(flow.local_port) + " has no socket");
    }
    ip_addr_t src, dst;
    if (ipaddr_aton(flow.local_address.c_str(), &src) == 0 ||
        ipaddr_aton(flow.remote_address.c_str(), &dst) == 0) {
      stats_.udp_send_errors++;
      return makeError("not a UDP flow: " + flow.local_address + " / " + flow.remote_address);
    }
    return sendThrough(it->second->pcb, payload, &dst, flow.remote_port, &src);
  }

  Result<std::unique_ptr<UdpFlow>> openUdp(const std::string& address, uint16_t port,
                                           UdpFlow::OnDatagram on_datagram) {
    ip_addr_t addr;
    if (ipaddr_aton(address.c_str(), &addr) == 0) {
      return makeError("\"" + address + "\" is not an IP address");
    }
    if (udp_flows_.size() >= opts_.max_udp_flows) {
      stats_.udp_flows_refused++;
      return makeError("too many overlay UDP flows (" + std::to_string(opts_.max_udp_flows) + ")");
    }
    udp_pcb* pcb = udp_new_ip_type(IPADDR_TYPE_ANY);
    if (pcb == nullptr) return makeError("out of memory for a UDP socket");
    if (udp_bind(pcb, IP_ANY_TYPE, 0) != ERR_OK || udp_connect(pcb, &addr, port) != ERR_OK) {
      udp_remove(pcb);
      return makeError("no free UDP port on the overlay");
    }
    auto st = std::make_shared<UdpFlow::State>();
    st->stack = this;
    st->pcb = pcb;
    st->port = pcb->local_port;
    st->on_datagram = std::move(on_datagram);
    udp_recv(pcb, onUdpFlow, st.get());
    udp_flows_[st->port] = st.get();
    stats_.udp_flows++;
    return std::unique_ptr<UdpFlow>(new UdpFlow(std::move(st)));
  }

  void closeUdpFlow(UdpFlow::State& st) {
    if (st.pcb == nullptr) return;
    udp_recv(st.pcb, nullptr, nullptr);
    udp_remove(st.pcb);
    st.pcb = nullptr;
    udp_flows_.erase(st.port);
    stats_.udp_flows--;
  }

  // --- timers ---

  void kick() {
    u32_t sleep = sys_timeouts_sleeptime();
    if (sleep == SYS_TIMEOUTS_SLEEPTIME_INFINITE) return;
    auto at = std::chrono::steady_clock::now() + std::chrono::milliseconds(sleep);
    if (timer_armed_ && timer_at_ <= at) return;
    timer_armed_ = true;
    timer_at_ = at;
    timer_.expires_at(at);
    timer_.async_wait([this, alive = alive_](std::error_code ec) {
      if (ec || !*alive) return;
      timer_armed_ = false;
      sys_check_timeouts();
      kick();
    });
  }

  // --- listeners ---

  Status openListener(uint16_t port, Accept cb, bool forwarded) {
    tcp_pcb* pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
    if (pcb == nullptr) return makeError("out of memory for a TCP listener");
    ip_set_option(pcb, SOF_REUSEADDR);
    if (err_t e = tcp_bind(pcb, IP_ANY_TYPE, port); e != ERR_OK) {
      tcp_close(pcb);
      return makeError("TCP port " + std::to_string(port) + " of the overlay is already in use");
    }
    err_t err = ERR_OK;
    tcp_pcb* lpcb = tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG, &err);
    if (lpcb == nullptr) {
      tcp_close(pcb);
      return makeError("listen on overlay TCP port " + std::to_string(port) + " failed");
    }
    auto l = std::make_unique<Listener>(Listener{this, lpcb, port, forwarded, std::move(cb)});
    tcp_arg(lpcb, l.get());
    tcp_accept(lpcb, onAccept);
    listeners_[port] = std::move(l);
    return {};
  }

  void closeListener(uint16_t port) {
    auto it = listeners_.find(port);
    if (it == listeners_.end()) return;
    tcp_arg(it->second->pcb, nullptr);
    tcp_accept(it->second->pcb, nullptr);
    tcp_close(it->second->pcb);
    if (it->second->forwarded) stats_.forwarded_ports--;
    listeners_.erase(it);
  }

  static err_t onAccept(void* arg, tcp_pcb* pcb, err_t err);

  // --- connections ---

  void connectionStarted() { stats_.connections++; }
  void connectionEnded(bool with_error) {
    stats_.connections--;
    if (with_error) stats_.tcp_errors++;
  }

  const Stats& stats() const { return stats_; }

  void dial(const std::string& address, uint16_t port, Dialed done);
  std::shared_ptr<Conn> takeDialing(Conn* c) {
    for (auto it = dialing_.begin(); it != dialing_.end(); ++it) {
      if (it->get() == c) {
        auto keep = std::move(*it);
        dialing_.erase(it);
        return keep;
      }
    }
    return nullptr;
  }

  asio::io_context& io_;
  Options opts_;
  Output output_;
  netif nif_{};
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  std::chrono::steady_clock::time_point timer_at_;
  std::map<uint16_t, std::unique_ptr<Listener>> listeners_;
  Accept forwarder_;
  Gate gate_;
  static constexpr size_t kMaxHeld = 256;  // SYNs waiting for the gate's decision
  std::map<std::string, std::vector<uint8_t>> held_;
  std::map<std::string, std::chrono::steady_clock::time_point> admitted_;
  Stats stats_;
  std::set<Conn*> conns_;
  std::vector<std::shared_ptr<Conn>> dialing_;  // connections being dialed (no stream yet)
  std::vector<uint8_t> out_buf_;
  std::map<uint16_t, std::unique_ptr<UdpPort>> udp_ports_;  // listeners' and the forwarder's
  std::shared_ptr<UdpReceive> udp_forwarder_;
  std::map<uint16_t, UdpFlow::State*> udp_flows_;  // openUdp's, by local port
  std::vector<uint8_t> udp_buf_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// One TCP connection, shared by its ByteStream and lwIP's callbacks (tcp_arg).
struct Conn {
  Conn(Netstack::Impl* s, tcp_pcb* p) : stack(s), io(s->io_), pcb(p) {}

  Netstack::Impl* stack;  // null once the stack is gone
  asio::io_context& io;
  tcp_pcb* pcb;          // null once closed, reset or aborted
  std::deque<pbuf*> rx;  // received chains, in order
  size_t rx_front_off = 0;
  size_t rx_len = 0;
  bool rx_eof = false;
  std::error_code error;
  bool closed = false;
  bool shutdown_pending = false;
  std::string remote;

  void* rd_data = nullptr;
  size_t rd_size = 0;
  net::ByteStream::IoHandler rd_handler;
  const uint8_t* wr_data = nullptr;
  size_t wr_size = 0, wr_off = 0;
  net::ByteStream::IoHandler wr_handler;
  Netstack::Dialed dialed;  // while a dial is in progress

  void complete(net::ByteStream::IoHandler& h, std::error_code ec, size_t n) {
    asio::post(io, [h = std::move(h), ec, n] { h(ec, n); });
    h = nullptr;
  }

  void attach() {
    tcp_arg(pcb, this);
    tcp_recv(pcb, onRecv);
    tcp_sent(pcb, onSent);
    tcp_err(pcb, onErr);
    tcp_nagle_disable(pcb);
  }

  void detach() {
    tcp_arg(pcb, nullptr);
    tcp_recv(pcb, nullptr);
    tcp_sent(pcb, nullptr);
    tcp_err(pcb, nullptr);
  }

  void tryRead() {
    if (!rd_handler) return;
    if (rx_len > 0 && rd_size > 0) {
      size_t n = std::min(rd_size, rx_len);
      size_t done = 0;
      auto* out = static_cast<uint8_t*>(rd_data);
      while (done < n) {
        pbuf* p = rx.front();
        size_t avail = p->tot_len - rx_front_off;
        size_t chunk = std::min(avail, n - done);
        pbuf_copy_partial(p, out + done, static_cast<u16_t>(chunk),
                          static_cast<u16_t>(rx_front_off));
        done += chunk;
        rx_front_off += chunk;
        if (rx_front_off == p->tot_len) {
          pbuf_free(p);
          rx.pop_front();
          rx_front_off = 0;
        }
      }
      rx_len -= n;
      if (stack != nullptr) stack->stats_.buffered_rx_bytes -= n;
      // The window opens only as the application reads: lwIP's buffering is the bound.
      for (size_t left = n; pcb != nullptr && left > 0;) {
        auto step = static_cast<u16_t>(std::min<size_t>(left, 0xffff));
        tcp_recved(pcb, step);
        left -= step;
      }
      complete(rd_handler, {}, n);
    } else if (rx_len == 0 && error) {
      complete(rd_handler, error, 0);
    } else if (rx_len == 0 && rx_eof) {
      complete(rd_handler, asio::error::eof, 0);
    }
  }

  void tryWrite() {
    if (!wr_handler) return;
    if (pcb == nullptr) {
      complete(wr_handler, error ? error : asio::error::broken_pipe, wr_off);
      return;
    }
    while (wr_off < wr_size) {
      size_t room = tcp_sndbuf(pcb);
      if (room == 0) break;
      size_t n = std::min({room, wr_size - wr_off, size_t{0xffff}});
      u8_t flags = TCP_WRITE_FLAG_COPY | (wr_off + n < wr_size ? TCP_WRITE_FLAG_MORE : 0);
      err_t e = tcp_write(pcb, wr_data + wr_off, static_cast<u16_t>(n), flags);
      if (e == ERR_MEM) break;  // the send queue is full: on_sent continues
      if (e != ERR_OK) {
        complete(wr_handler, errorFromLwip(e), wr_off);
        return;
      }
      wr_off += n;
    }
    tcp_output(pcb);
    if (wr_off == wr_size) {
      complete(wr_handler, {}, wr_size);
      if (shutdown_pending) {
        shutdown_pending = false;
        tcp_shutdown(pcb, 0, 1);
      }
    }
  }

  // The pcb is gone (reset, aborted) or we give it up.
  void lost(std::error_code ec) {
    pcb = nullptr;
    if (!error) error = ec;
    if (stack != nullptr) stack->connectionEnded(true);
    if (dialed) {
      auto d = std::move(dialed);
      dialed = nullptr;
      std::shared_ptr<Conn> keep;  // released on the loop, not while `this` is running
      if (stack != nullptr) keep = stack->takeDialing(this);
      closed = true;
      if (stack != nullptr) stack->conns_.erase(this);
      asio::post(io, [d = std::move(d), ec, keep] {
        d(makeError("TCP connect over the overlay failed: " + ec.message()));
      });
      return;
    }
    tryRead();
    tryWrite();
  }

  void close(bool reset = false) {
    if (closed) return;
    closed = true;
    if (pcb != nullptr) {
      detach();
      if (reset || tcp_close(pcb) != ERR_OK) tcp_abort(pcb);
      pcb = nullptr;
      if (stack != nullptr) stack->connectionEnded(false);
    }
    for (pbuf* p : rx) pbuf_free(p);
    rx.clear();
    if (stack != nullptr) stack->stats_.buffered_rx_bytes -= rx_len;
    rx_len = 0;
    if (rd_handler) complete(rd_handler, asio::error::operation_aborted, 0);
    if (wr_handler) complete(wr_handler, asio::error::operation_aborted, wr_off);
    if (stack != nullptr) {
      stack->conns_.erase(this);
      stack->kick();
    }
  }

  static err_t onRecv(void* arg, tcp_pcb* pcb, pbuf* p, err_t) {
    auto* c = static_cast<Conn*>(arg);
    if (c == nullptr) {
      if (p != nullptr) {
        tcp_recved(pcb, p->tot_len);
        pbuf_free(p);
      }
      return ERR_OK;
    }
    if (p == nullptr) {
      c->rx_eof = true;
    } else {
      c->rx.push_back(p);
      c->rx_len += p->tot_len;
      if (c->stack != nullptr) c->stack->stats_.buffered_rx_bytes += p->tot_len;
    }
    c->tryRead();
    return ERR_OK;
  }

  static err_t onSent(void* arg, tcp_pcb*, u16_t) {
    if (auto* c = static_cast<Conn*>(arg)) c->tryWrite();
    return ERR_OK;
  }

  static void onErr(void* arg, err_t err) {
    if (auto* c = static_cast<Conn*>(arg)) c->lost(errorFromLwip(err));
  }

  static err_t onConnected(void* arg, tcp_pcb* pcb, err_t err);
};

class Stream final : public net::ByteStream {
 public:
  explicit Stream(std::shared_ptr<Conn> c) : c_(std::move(c)) {}
  ~Stream() override { c_->close(); }

  void asyncReadSome(void* data, std::size_t size, IoHandler handler) override {
    if (c_->closed) {
      asio::post(c_->io, [h = std::move(handler)] { h(asio::error::operation_aborted, 0); });
      return;
    }
    c_->rd_data = data;
    c_->rd_size = size;
    c_->rd_handler = std::move(handler);
    if (size == 0) {
      c_->complete(c_->rd_handler, {}, 0);
      return;
    }
    c_->tryRead();
    if (c_->stack != nullptr) c_->stack->kick();
  }

  void asyncWrite(const void* data, std::size_t size, IoHandler handler) override {
    if (c_->closed) {
      asio::post(c_->io, [h = std::move(handler)] { h(asio::error::operation_aborted, 0); });
      return;
    }
    c_->wr_data = static_cast<const uint8_t*>(data);
    c_->wr_size = size;
    c_->wr_off = 0;
    c_->wr_handler = std::move(handler);
    c_->tryWrite();
    if (c_->stack != nullptr) c_->stack->kick();
  }

  void shutdownWrite() override {
    if (c_->closed || c_->pcb == nullptr) return;
    if (c_->wr_handler) {
      c_->shutdown_pending = true;
      return;
    }
    tcp_shutdown(c_->pcb, 0, 1);
    if (c_->stack != nullptr) c_->stack->kick();
  }

  void close() override { c_->close(); }
  void abort() override { c_->close(/*reset=*/true); }
  std::string remoteAddress() const override { return c_->remote; }

 private:
  std::shared_ptr<Conn> c_;
};

err_t Netstack::Impl::onAccept(void* arg, tcp_pcb* pcb, err_t err) {
  auto* l = static_cast<Listener*>(arg);
  if (l == nullptr || err != ERR_OK || pcb == nullptr) return ERR_VAL;
  Impl* self = l->stack;
  if (self->stats_.connections >= self->opts_.max_connections) {
    self->stats_.tcp_refused++;
    tcp_abort(pcb);
    return ERR_ABRT;
  }
  auto conn = std::make_shared<Conn>(self, pcb);
  conn->remote = formatEndpoint(pcb->remote_ip, pcb->remote_port);
  conn->attach();
  self->conns_.insert(conn.get());
  self->connectionStarted();
  self->stats_.tcp_accepted++;
  ConnectionInfo info{conn->remote, formatEndpoint(pcb->local_ip, pcb->local_port),
                      pcb->local_port};
  auto stream = std::make_unique<Stream>(conn);
  // Hand it over from the loop, not from inside lwIP's input processing.
  asio::post(self->io_, [cb = l->on_accept, s = std::move(stream), info]() mutable {
    cb(std::move(s), info);
  });
  return ERR_OK;
}

err_t Conn::onConnected(void* arg, tcp_pcb*, err_t err) {
  auto* c = static_cast<Conn*>(arg);
  if (c == nullptr || !c->dialed) return ERR_OK;
  auto d = std::move(c->dialed);
  c->dialed = nullptr;
  if (err != ERR_OK) {  // lwIP 2.1 reports failures through the error callback; be safe anyway
    c->dialed = std::move(d);
    c->detach();
    tcp_abort(c->pcb);
    c->lost(errorFromLwip(err));
    return ERR_ABRT;
  }
  c->stack->stats_.tcp_dialed++;
  // The stream takes over the connection the dial kept alive.
  net::ByteStreamPtr s = std::make_unique<Stream>(c->stack->takeDialing(c));
  asio::post(c->io, [d = std::move(d), s = std::move(s)]() mutable { d(std::move(s)); });
  return ERR_OK;
}

void Netstack::Impl::dial(const std::string& address, uint16_t port, Dialed done) {
  ip_addr_t addr;
  if (ipaddr_aton(address.c_str(), &addr) == 0) {
    asio::post(io_, [done = std::move(done), address] {
      done(makeError("\"" + address + "\" is not an IP address"));
    });
    return;
  }
  if (stats_.connections >= opts_.max_connections) {
    stats_.tcp_refused++;
    asio::post(io_, [done = std::move(done), n = opts_.max_connections] {
      done(makeError("too many overlay TCP connections (" + std::to_string(n) + ")"));
    });
    return;
  }
  tcp_pcb* pcb = tcp_new_ip_type(IP_GET_TYPE(&addr));
  if (pcb == nullptr) {
    asio::post(io_,
               [done = std::move(done)] { done(makeError("out of memory for a TCP connection")); });
    return;
  }
  auto conn = std::make_shared<Conn>(this, pcb);
  conn->remote = formatEndpoint(addr, port);
  conn->dialed = std::move(done);
  conn->attach();
  conns_.insert(conn.get());
  dialing_.push_back(conn);
  connectionStarted();
  if (err_t e = tcp_connect(pcb, &addr, port, Conn::onConnected); e != ERR_OK) {
    conn->detach();
    tcp_abort(pcb);
    conn->lost(errorFromLwip(e));
  }
  kick();
}

// --- Netstack -----------------------------------------------------------------------------------

Result<std::unique_ptr<Netstack>> Netstack::create(asio::io_context& io, Options options,
                                                   Output output) {
  if (g_instance != nullptr) {
    return makeError("a userspace network stack already exists in this process (lwIP is global)");
  }
  if (options.addresses.empty()) return makeError("the network stack needs at least one address");
  ip4_addr_t v4{};
  std::vector<ip6_addr_t> v6;
  bool have_v4 = false;
  for (const auto& a : options.addresses) {
    ip_addr_t addr;
    if (ipaddr_aton(a.c_str(), &addr) == 0) return makeError("\"" + a + "\" is not an IP address");
    if (IP_IS_V4(&addr)) {
      if (have_v4) return makeError("at most one IPv4 address (" + a + ")");
      v4 = *ip_2_ip4(&addr);
      have_v4 = true;
    } else {
      if (v6.size() >= LWIP_IPV6_NUM_ADDRESSES) {
        return makeError("at most " + std::to_string(LWIP_IPV6_NUM_ADDRESSES) + " IPv6 addresses");
      }
      v6.push_back(*ip_2_ip6(&addr));
    }
  }
  if (sodium_init() < 0) return makeError("libsodium failed to initialise");
  static bool lwip_ready = false;
  if (!lwip_ready) {
    lwip_init();
    lwip_ready = true;
  }
  std::unique_ptr<Netstack> n(new Netstack());
  n->impl_ = std::make_unique<Impl>(io, std::move(options), std::move(output));
  Impl* impl = n->impl_.get();
  ip4_addr_t mask, gw;
  IP4_ADDR(&mask, 255, 255, 255, 255);
  ip4_addr_set_zero(&gw);
  if (netif_add(&impl->nif_, &v4, &mask, &gw, impl, Impl::netifInit, ip_input) == nullptr) {
    return makeError("lwIP refused the overlay interface");
  }
  for (size_t i = 0; i < v6.size(); ++i) {
    netif_ip6_addr_set(&impl->nif_, static_cast<s8_t>(i), &v6[i]);
    netif_ip6_addr_set_state(&impl->nif_, static_cast<s8_t>(i), IP6_ADDR_PREFERRED);
  }
  netif_set_default(&impl->nif_);
  netif_set_link_up(&impl->nif_);
  netif_set_up(&impl->nif_);
  g_instance = impl;
  return n;
}

Netstack::~Netstack() {
  if (!impl_) return;
  Impl* s = impl_.get();
  *s->alive_ = false;
  s->timer_.cancel();
  // Connections end with an error for their streams; the streams may outlive the stack.
  std::vector<Conn*> conns(s->conns_.begin(), s->conns_.end());
  for (Conn* c : conns) {
    if (c->pcb != nullptr) {
      tcp_pcb* pcb = c->pcb;
      c->detach();
      tcp_abort(pcb);
      c->lost(asio::error::shut_down);
    }
    c->stack = nullptr;
  }
  s->conns_.clear();
  std::vector<uint16_t> ports;
  for (auto& [port, l] : s->listeners_) ports.push_back(port);
  for (uint16_t p : ports) s->closeListener(p);
  std::vector<UdpFlow::State*> flows;
  for (auto& [port, st] : s->udp_flows_) flows.push_back(st);
  for (UdpFlow::State* st : flows) {
    s->closeUdpFlow(*st);
    st->stack = nullptr;
  }
  ports.clear();
  for (auto& [port, up] : s->udp_ports_) ports.push_back(port);
  for (uint16_t p : ports) s->closeUdpPort(p);
  netif_set_down(&s->nif_);
  netif_remove(&s->nif_);
  g_instance = nullptr;
}

void Netstack::input(std::span<const uint8_t> ip_packet) {
  impl_->input(ip_packet);
}

Status Netstack::listen(uint16_t port, Accept on_accept) {
  auto it = impl_->listeners_.find(port);
  if (it != impl_->listeners_.end()) {
    if (!it->second->forwarded) {
      return makeError("overlay TCP port " + std::to_string(port) + " already has a listener");
    }
    impl_->closeListener(port);  // a specific listener replaces the forwarder's
  }
  auto st = impl_->openListener(port, std::move(on_accept), false);
  impl_->kick();
  return st;
}

void Netstack::unlisten(uint16_t port) {
  impl_->closeListener(port);
}

void Netstack::setForwarder(Accept on_accept, Gate gate) {
  impl_->forwarder_ = std::move(on_accept);
  impl_->gate_ = std::move(gate);
  if (!impl_->forwarder_) {
    std::vector<uint16_t> ports;
    for (auto& [port, l] : impl_->listeners_) {
      if (l->forwarded) ports.push_back(port);
    }
    for (uint16_t p : ports) impl_->closeListener(p);
  }
}

void Netstack::dial(const std::string& address, uint16_t port, Dialed done) {
  impl_->dial(address, port, std::move(done));
}

Status Netstack::listenUdp(uint16_t port, UdpReceive on_datagram) {
  auto it = impl_->udp_ports_.find(port);
  if (it != impl_->udp_ports_.end()) {
    if (!it->second->forwarded) {
      return makeError("overlay UDP port " + std::to_string(port) + " already has a socket");
    }
    impl_->closeUdpPort(port);  // a service of our own replaces the forwarder
  }
  return impl_->openUdpPort(port, std::make_shared<UdpReceive>(std::move(on_datagram)), false);
}

void Netstack::unlistenUdp(uint16_t port) {
  auto it = impl_->udp_ports_.find(port);
  if (it != impl_->udp_ports_.end() && !it->second->forwarded) impl_->closeUdpPort(port);
}

void Netstack::setUdpForwarder(UdpReceive on_datagram) {
  impl_->udp_forwarder_ =
      on_datagram ? std::make_shared<UdpReceive>(std::move(on_datagram)) : nullptr;
  if (!impl_->udp_forwarder_) {
    std::vector<uint16_t> ports;
    for (auto& [port, up] : impl_->udp_ports_) {
      if (up->forwarded) ports.push_back(port);
    }
    for (uint16_t p : ports) impl_->closeUdpPort(p);
  }
}

void Netstack::releaseUdpPort(uint16_t port) {
  auto it = impl_->udp_ports_.find(port);
  if (it != impl_->udp_ports_.end() && it->second->forwarded) impl_->closeUdpPort(port);
}

Status Netstack::sendUdp(const UdpInfo& flow, std::span<const uint8_t> payload) {
  return impl_->sendUdp(flow, payload);
}

Result<std::unique_ptr<UdpFlow>> Netstack::openUdp(const std::string& address, uint16_t port,
                                                   UdpFlow::OnDatagram on_datagram) {
  return impl_->openUdp(address, port, std::move(on_datagram));
}

UdpFlow::~UdpFlow() {
  if (s_->stack != nullptr) s_->stack->closeUdpFlow(*s_);
}

Status UdpFlow::send(std::span<const uint8_t> payload) {
  if (s_->stack == nullptr || s_->pcb == nullptr) {
    return makeError("the overlay network stack is gone");
  }
  return s_->stack->sendThrough(s_->pcb, payload, nullptr, 0, nullptr);
}

uint16_t UdpFlow::localPort() const {
  return s_->port;
}

const Stats& Netstack::stats() const {
  return impl_->stats();
}

}  // namespace wsa::netstack
