#include <asio/io_context.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "client/commands.h"
#include "client/session.h"
#include "wsa/common/clock.h"
#include "wsa/control/channel.h"
#include "wsa/control/url.h"
#include "wsa/overlay/discovery.h"
#include "wsa/wg/udp.h"

namespace wsa::client {

// `wsa netcheck`: what this machine's network allows, as the overlay would find it — one STUN
// round from a fresh UDP socket to every STUN server of the relay map.
Exit runNetcheck(const std::string& url_text, const std::string& token, bool json) {
  auto url = control::parseControlUrl(url_text);
  if (!url) return Exit::usage("--url: " + url.error());
  auto channel = control::makeChannel(*url);
  if (!channel) return Exit::failure(channel.error());
  auto fetched = fetchStunTargets(*channel, token, url_text, /*resolve_hostnames=*/true,
                                  std::chrono::seconds(10));
  if (!fetched) return Exit::failure(fetched.error());
  const overlay::StunTargets& targets = *fetched;
  if (targets.targets.empty()) {
    std::string why =
        targets.skipped.empty() ? "the relay map lists no STUN server" : targets.skipped.front();
    return Exit::failure("no STUN server to ask: " + why);
  }

  asio::io_context io(1);
  auto clock = makeLoopClock(io);
  overlay::Discovery* discovery = nullptr;
  auto udp = wg::UdpBind::open(io, 0, [&discovery](const wg::Endpoint& from, std::span<uint8_t> d) {
    if (discovery != nullptr) discovery->onDatagram(from, d);
  });
  if (!udp) return Exit::failure("UDP socket: " + udp.error());
  std::optional<overlay::DiscoveryReport> report;
  overlay::Discovery::Options dopts;
  dopts.logger = "wsa";
  overlay::Discovery d(
      *clock, dopts,
      [&udp](const wg::Endpoint& to, std::span<const uint8_t> b) { (*udp)->send(to, b); },
      [&report, &io](const overlay::DiscoveryReport& r) {
        report = r;
        io.stop();
      });
  discovery = &d;
  d.setTargets(targets.targets);
  d.start();
  io.run_for(std::chrono::seconds(10));
  d.stop();
  if (!report) return Exit::failure("no STUN round completed");

  int preferred = overlay::nearestRegion(report->latency_ms);
  if (json) {
    nlohmann::json j;
    j["reflexive"] = nlohmann::json::array();
    for (const auto& e : report->reflexive) j["reflexive"].push_back(e.toString());
    j["mapping_varies_by_destination"] =
        report->varies == overlay::MappingVaries::kUnknown
            ? nlohmann::json(nullptr)
            : nlohmann::json(report->varies == overlay::MappingVaries::kYes);
    j["stun_servers"] = report->targets;
    j["stun_answers"] = report->answered;
    j["region_latency_ms"] = nlohmann::json::object();
    for (const auto& [region, ms] : report->latency_ms) {
      j["region_latency_ms"][std::to_string(region)] = ms;
    }
    j["preferred_region"] = preferred == 0 ? nlohmann::json(nullptr) : nlohmann::json(preferred);
    std::cout << j.dump() << "\n";
    return Exit::success();
  }
  std::cout << "Report:\n";
  std::cout << "  * STUN servers answering: " << report->answered << " of " << report->targets
            << "\n";
  std::string refl;
  for (const auto& e : report->reflexive) refl += (refl.empty() ? "" : ", ") + e.toString();
  std::cout << "  * Reflexive address: " << (refl.empty() ? "(none)" : refl) << "\n";
  std::cout << "  * Mapping varies by destination: "
            << (report->varies == overlay::MappingVaries::kUnknown
                    ? "unknown (fewer than two STUN answers)"
                : report->varies == overlay::MappingVaries::kYes
                    ? "yes (a hard NAT: direct paths need the other side to be easy)"
                    : "no")
            << "\n";
  std::cout << "  * Preferred region: "
            << (preferred == 0 ? std::string("(none)") : std::to_string(preferred)) << "\n";
  std::cout << "  * Region latencies:\n";
  for (const auto& [region, ms] : report->latency_ms) {
    char line[64];
    std::snprintf(line, sizeof(line), "    - %d: %.1f ms\n", region, ms);
    std::cout << line;
  }
  return Exit::success();
}

}  // namespace wsa::client
