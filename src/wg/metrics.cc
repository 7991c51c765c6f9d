#include "wsa/wg/metrics.h"

#include "wsa/wg/device.h"
#include "wsa/wg/tun.h"
#include "wsa/wg/udp.h"

namespace wsa::wg {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

class Builder {
 public:
  explicit Builder(std::string interface) : interface_(std::move(interface)) {}

  void add(const std::string& name, const std::string& help, MetricType type, double value,
           std::vector<ClientMetric::Label> labels = {}) {
    MetricFamily* f = family(name, help, type);
    ClientMetric m;
    m.label.push_back({"interface", interface_});
    for (auto& l : labels) m.label.push_back(std::move(l));
    if (type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f->metric.push_back(std::move(m));
  }
  void counter(const std::string& name, const std::string& help, double v,
               std::vector<ClientMetric::Label> labels = {}) {
    add(name, help, MetricType::Counter, v, std::move(labels));
  }
  void gauge(const std::string& name, const std::string& help, double v,
             std::vector<ClientMetric::Label> labels = {}) {
    add(name, help, MetricType::Gauge, v, std::move(labels));
  }
  std::vector<MetricFamily> take() { return std::move(out_); }

 private:
  MetricFamily* family(const std::string& name, const std::string& help, MetricType type) {
    for (auto& f : out_) {
      if (f.name == name) return &f;
    }
    out_.push_back(MetricFamily{name, help, type, {}});
    return &out_.back();
  }
  std::string interface_;
  std::vector<MetricFamily> out_;
};

}  // namespace

std::vector<prometheus::MetricFamily> collectMetrics(const MetricsSources& src,
                                                     const std::string& interface) {
  Builder b(interface);
  if (src.device != nullptr) {
    const Device& d = *src.device;
    const Counters& c = d.counters();
    const std::string hm = "wsa_wg_handshake_messages_total";
    const std::string hm_help = "Handshake messages by type and direction";
    b.counter(hm, hm_help, static_cast<double>(c.initiations_sent),
              {{"type", "initiation"}, {"direction", "sent"}});
    b.counter(hm, hm_help, static_cast<double>(c.initiations_received),
              {{"type", "initiation"}, {"direction", "received"}});
    b.counter(hm, hm_help, static_cast<double>(c.responses_sent),
              {{"type", "response"}, {"direction", "sent"}});
    b.counter(hm, hm_help, static_cast<double>(c.responses_received),
              {{"type", "response"}, {"direction", "received"}});
    b.counter(hm, hm_help, static_cast<double>(c.cookie_replies_sent),
              {{"type", "cookie_reply"}, {"direction", "sent"}});
    b.counter(hm, hm_help, static_cast<double>(c.cookie_replies_received),
              {{"type", "cookie_reply"}, {"direction", "received"}});
    b.counter("wsa_wg_handshakes_total", "Completed handshakes (sessions established)",
              static_cast<double>(c.handshakes_completed));
    b.counter("wsa_wg_rekeys_total", "Completed handshakes with a peer that had a session before",
              static_cast<double>(c.rekeys));
    b.counter("wsa_wg_keepalives_sent_total", "Keepalive messages sent",
              static_cast<double>(c.keepalives_sent));
    for (size_t i = 0; i < static_cast<size_t>(Drop::kCount); ++i) {
      b.counter("wsa_wg_dropped_total", "Packets dropped by the engine, by reason",
                static_cast<double>(c.drops[i]), {{"reason", dropName(static_cast<Drop>(i))}});
    }
    b.gauge("wsa_wg_sessions", "Live keypairs", static_cast<double>(d.sessionCount()));
    b.gauge("wsa_wg_under_load", "1 while handshakes are answered with cookies",
            d.underLoad() ? 1 : 0);
    auto peers = d.peers();
    b.gauge("wsa_wg_peers", "Configured peers", static_cast<double>(peers.size()));
    for (const auto& p : peers) {
      std::string key = toBase64(p.public_key);
      b.counter("wsa_wg_peer_bytes_total", "Bytes of authenticated datagrams, per peer",
                static_cast<double>(p.rx_bytes), {{"peer", key}, {"direction", "rx"}});
      b.counter("wsa_wg_peer_bytes_total", "Bytes of authenticated datagrams, per peer",
                static_cast<double>(p.tx_bytes), {{"peer", key}, {"direction", "tx"}});
      b.counter("wsa_wg_peer_packets_total", "Inner IP packets, per peer",
                static_cast<double>(p.rx_packets), {{"peer", key}, {"direction", "rx"}});
      b.counter("wsa_wg_peer_packets_total", "Inner IP packets, per peer",
                static_cast<double>(p.tx_packets), {{"peer", key}, {"direction", "tx"}});
      b.counter("wsa_wg_peer_handshakes_total", "Completed handshakes, per peer",
                static_cast<double>(p.handshakes), {{"peer", key}});
      double last = 0;
      if (p.last_handshake) {
        last = std::chrono::duration<double>(p.last_handshake->time_since_epoch()).count();
      }
      b.gauge("wsa_wg_peer_last_handshake_seconds",
              "Unix time of the peer's last completed handshake (0: never)", last, {{"peer", key}});
    }
  }
  if (const UdpBind* u = src.udp ? src.udp() : nullptr) {
    const auto& s = u->stats();
    b.counter("wsa_wg_udp_datagrams_total", "UDP datagrams", static_cast<double>(s.rx_datagrams),
              {{"direction", "rx"}});
    b.counter("wsa_wg_udp_datagrams_total", "UDP datagrams", static_cast<double>(s.tx_datagrams),
              {{"direction", "tx"}});
    b.counter("wsa_wg_udp_truncated_total", "Received datagrams larger than the buffer",
              static_cast<double>(s.rx_truncated));
    b.counter("wsa_wg_udp_send_dropped_total",
              "Datagrams dropped because the send queue was full (bound: " +
                  std::to_string(UdpBind::kMaxQueued) + ")",
              static_cast<double>(s.tx_dropped));
    b.counter("wsa_wg_udp_send_errors_total", "Datagrams the kernel refused (unreachable, ...)",
              static_cast<double>(s.tx_errors));
    b.gauge("wsa_wg_udp_send_queue", "Datagrams waiting in the send queue",
            static_cast<double>(u->queued()));
  }
  if (const Tun* t = src.tun ? src.tun() : nullptr) {
    const auto& s = t->stats();
    b.counter("wsa_wg_tun_packets_total", "Packets through the TUN interface",
              static_cast<double>(s.rx_packets), {{"direction", "rx"}});
    b.counter("wsa_wg_tun_packets_total", "Packets through the TUN interface",
              static_cast<double>(s.tx_packets), {{"direction", "tx"}});
    b.counter("wsa_wg_tun_write_dropped_total", "Packets the TUN interface did not take",
              static_cast<double>(s.tx_dropped));
  }
  return b.take();
}

}  // namespace wsa::wg
