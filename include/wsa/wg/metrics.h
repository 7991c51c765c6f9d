#pragma once
// Prometheus metrics of a WireGuard device, read from the engine's counters at scrape time
// (nothing is counted twice and the data path does no extra work). collectMetrics must run on the
// device's loop, like every other call into the device. Per-peer series carry the peer's public
// key (base64, public information) and are bounded by the device's peer limit; a removed peer's
// series disappear with it.

#include <functional>
#include <string>

namespace wsa::metrics {
class Families;
}

namespace wsa::wg {

class Device;
class UdpBind;
class Tun;

struct MetricsSources {
  const Device* device = nullptr;
  std::function<const UdpBind*()> udp;  // may return null (not bound)
  std::function<const Tun*()> tun;      // may return null (no TUN: the userspace stack)
};

// The device's collector: families named wsa_wg_*, each series with the constant label
// interface="<name>" first.
void collectMetrics(const MetricsSources& sources, const std::string& interface,
                    metrics::Families& out);

}  // namespace wsa::wg
