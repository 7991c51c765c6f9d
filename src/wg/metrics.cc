#include "wsa/wg/metrics.h"

#include "wsa/common/metrics.h"
#include "wsa/wg/device.h"
#include "wsa/wg/tun.h"
#include "wsa/wg/udp.h"

namespace wsa::wg {

void collectMetrics(const MetricsSources& src, const std::string& interface,
                    metrics::Families& out) {
  // Every series starts with the constant label interface="<name>".
  auto labels = [&interface](metrics::Labels more = {}) {
    more.insert(more.begin(), {"interface", interface});
    return more;
  };
  if (src.device != nullptr) {
    const Device& d = *src.device;
    const Counters& c = d.counters();
    out.counters("wsa_wg_handshake_messages_total", "Handshake messages by type and direction")
        .add(c.initiations_sent, labels({{"type", "initiation"}, {"direction", "sent"}}))
        .add(c.initiations_received, labels({{"type", "initiation"}, {"direction", "received"}}))
        .add(c.responses_sent, labels({{"type", "response"}, {"direction", "sent"}}))
        .add(c.responses_received, labels({{"type", "response"}, {"direction", "received"}}))
        .add(c.cookie_replies_sent, labels({{"type", "cookie_reply"}, {"direction", "sent"}}))
        .add(c.cookie_replies_received,
             labels({{"type", "cookie_reply"}, {"direction", "received"}}));
    out.counter("wsa_wg_handshakes_total", "Completed handshakes (sessions established)",
                c.handshakes_completed, labels());
    out.counter("wsa_wg_rekeys_total", "Completed handshakes with a peer that had a session before",
                c.rekeys, labels());
    out.counter("wsa_wg_keepalives_sent_total", "Keepalive messages sent", c.keepalives_sent,
                labels());
    auto dropped = out.counters("wsa_wg_dropped_total", "Packets dropped by the engine, by reason");
    for (size_t i = 0; i < static_cast<size_t>(Drop::kCount); ++i) {
      dropped.add(c.drops[i], labels({{"reason", dropName(static_cast<Drop>(i))}}));
    }
    out.gauge("wsa_wg_sessions", "Live keypairs", d.sessionCount(), labels());
    out.gauge("wsa_wg_under_load", "1 while handshakes are answered with cookies",
              d.underLoad() ? 1 : 0, labels());
    auto peers = d.peers();
    out.gauge("wsa_wg_peers", "Configured peers", peers.size(), labels());
    for (const auto& p : peers) {
      std::string key = toBase64(p.public_key);
      out.counters("wsa_wg_peer_bytes_total", "Bytes of authenticated datagrams, per peer")
          .add(p.rx_bytes, labels({{"peer", key}, {"direction", "rx"}}))
          .add(p.tx_bytes, labels({{"peer", key}, {"direction", "tx"}}));
      out.counters("wsa_wg_peer_packets_total", "Inner IP packets, per peer")
          .add(p.rx_packets, labels({{"peer", key}, {"direction", "rx"}}))
          .add(p.tx_packets, labels({{"peer", key}, {"direction", "tx"}}));
      out.counter("wsa_wg_peer_handshakes_total", "Completed handshakes, per peer", p.handshakes,
                  labels({{"peer", key}}));
      double last = 0;
      if (p.last_handshake) {
        last = std::chrono::duration<double>(p.last_handshake->time_since_epoch()).count();
      }
      out.gauge("wsa_wg_peer_last_handshake_seconds",
                "Unix time of the peer's last completed handshake (0: never)", last,
                labels({{"peer", key}}));
    }
  }
  if (const UdpBind* u = src.udp ? src.udp() : nullptr) {
    const auto& s = u->stats();
    out.counters("wsa_wg_udp_datagrams_total", "UDP datagrams")
        .add(s.rx_datagrams, labels({{"direction", "rx"}}))
        .add(s.tx_datagrams, labels({{"direction", "tx"}}));
    out.counter("wsa_wg_udp_truncated_total", "Received datagrams larger than the buffer",
                s.rx_truncated, labels());
    out.counter("wsa_wg_udp_send_dropped_total",
                "Datagrams dropped because the send queue was full (bound: " +
                    std::to_string(UdpBind::kMaxQueued) + ")",
                s.tx_dropped, labels());
    out.counter("wsa_wg_udp_send_errors_total", "Datagrams the kernel refused (unreachable, ...)",
                s.tx_errors, labels());
    out.gauge("wsa_wg_udp_send_queue", "Datagrams waiting in the send queue", u->queued(),
              labels());
  }
  if (const Tun* t = src.tun ? src.tun() : nullptr) {
    const auto& s = t->stats();
    out.counters("wsa_wg_tun_packets_total", "Packets through the TUN interface")
        .add(s.rx_packets, labels({{"direction", "rx"}}))
        .add(s.tx_packets, labels({{"direction", "tx"}}));
    out.counter("wsa_wg_tun_write_dropped_total", "Packets the TUN interface did not take",
                s.tx_dropped, labels());
  }
}

}  // namespace wsa::wg
