#pragma once
// Endpoint discovery: how the NAT in front of this machine maps the overlay's UDP socket, and
// how far each relay region is — STUN Binding requests sent from the WireGuard socket itself
// (so the mapping learnt is the one peers will use), a state machine with no I/O of its own.
// The owner gives it a send function (the engine's UDP socket) and the Clock, and feeds it the
// datagrams the socket receives (onDatagram says which were its own).
//
// A round sends one request to every target; a target that has not answered after
// timeout / (retries + 1) is asked again (a fresh transaction id, the earlier one still
// counts), and the round ends when every target answered or `timeout` passed. Then the report:
//   reflexive    the mapped addresses the servers saw, distinct, first answer first
//   varies       YES when two servers (different addresses or ports, same address family)
//                saw different mappings — a NAT whose mapping depends on the destination, so
//                the reflexive address is of no use to peers; NO when at least two agree and
//                none disagree; UNKNOWN with fewer than two answers in a family
//   latency_ms   the best round trip per region that answered
// on_report is called after the first round, and after later ones only when something
// changed: the set of reflexive addresses, varies, the regions that answered, or a region's
// latency by more than 20 % and more than 5 ms (so jitter on fast paths is not a change).
// Then the next round is scheduled `interval` later; rediscover() runs one now (a network
// change), and so does setTargets() with different targets once started.
//
// A response counts only when its transaction id is outstanding in the current round and it
// comes from the server the request went to: a forged answer cannot set our address without
// guessing 96 random bits. Late, duplicate and forged responses are counted (unmatched).

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/wg/endpoint.h"

namespace spdlog {
class logger;
}
namespace wsa::overlay::v1 {
class RelayMap;
}

namespace wsa::overlay {

// The values of wsa.overlay.v1.MappingVaries (static_cast between the two).
enum class MappingVaries { kUnknown = 0, kNo = 1, kYes = 2 };
const char* mappingVariesName(MappingVaries v);  // "unknown", "no", "yes"

struct StunTarget {
  int region = 0;
  wg::Endpoint server;
  bool operator==(const StunTarget&) const = default;
};

struct DiscoveryReport {
  std::vector<wg::Endpoint> reflexive;  // distinct, first seen first
  MappingVaries varies = MappingVaries::kUnknown;
  std::map<int, double> latency_ms;  // best round trip per region that answered
  bool complete = false;             // a round ended (false only before the first one has)
  size_t targets = 0;                // asked in the round
  size_t answered = 0;               // of them, answered
};

class Discovery {
 public:
  // Sends one datagram from the overlay's UDP socket; failures are the socket's business
  // (the request then times out). It must not call back into the Discovery (an answer
  // delivered synchronously to onDatagram is fine).
  using Send = std::function<void(const wg::Endpoint& to, std::span<const uint8_t> datagram)>;
  using OnReport = std::function<void(const DiscoveryReport& report)>;

  struct Options {
    Duration interval = std::chrono::seconds(30);  // from the end of a round to the next
    Duration timeout = std::chrono::seconds(2);    // a round's length at most
    int retries = 1;                               // extra requests to a silent target
    std::string logger = "overlay";
    std::string software;  // SOFTWARE attribute of the requests; empty: none
  };

  struct Stats {
    uint64_t rounds = 0;     // ended
    uint64_t requests = 0;   // sent
    uint64_t responses = 0;  // matched an outstanding request
    uint64_t timeouts = 0;   // targets silent for a whole round
    uint64_t unmatched = 0;  // STUN responses with no outstanding request (late, duplicate,
                             // forged) or from another address than the one asked
    uint64_t malformed = 0;  // STUN-looking responses that do not parse, and error responses
  };

  Discovery(Clock& clock, Options options, Send send, OnReport on_report);
  ~Discovery();
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // Duplicate servers are dropped (the first one's region stays). Once started, different
  // targets start a round now (a round in progress is abandoned).
  void setTargets(std::vector<StunTarget> targets);
  // The first round now; idempotent.
  void start();
  // A round now (abandoning one in progress); starts when not started.
  void rediscover();
  // No rounds from now on, and no callbacks; start() begins again.
  void stop();

  // A datagram the socket received. True when it was a STUN response (success or error),
  // which the owner must not pass on (to WireGuard); false for anything else, STUN requests
  // included.
  bool onDatagram(const wg::Endpoint& from, std::span<const uint8_t> datagram);

  const DiscoveryReport& last() const { return last_; }  // the newest round's, reported or not
  const Stats& stats() const { return stats_; }
  bool roundInProgress() const { return in_round_; }
  const std::vector<StunTarget>& targets() const { return targets_; }

 private:
  struct Answer {
    bool done = false;
    uint64_t order = 0;  // arrival
    wg::Endpoint mapped;
    Duration rtt{};
  };
  struct Outstanding {
    size_t target = 0;
    MonoTime sent;
  };

  void startRound();
  void sendRequest(size_t target);
  void onStep();
  void maybeFinish();
  void finishRound();
  DiscoveryReport buildReport() const;
  static bool changed(const DiscoveryReport& before, const DiscoveryReport& now);

  Clock& clock_;
  Options options_;
  Send send_;
  OnReport on_report_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Timer> timer_;  // the round's steps, then the interval to the next round
  std::vector<StunTarget> targets_;
  bool started_ = false;
  bool in_round_ = false;
  bool sending_ = false;  // inside startRound's sends (a synchronous answer must not end it)
  int step_ = 0;
  uint64_t arrivals_ = 0;
  std::map<std::array<uint8_t, 12>, Outstanding> outstanding_;
  std::vector<Answer> answers_;  // per target, this round
  DiscoveryReport last_;
  DiscoveryReport reported_;
  bool reported_once_ = false;
  Stats stats_;
};

// The region with the lowest latency (the home region); 0 when there is none.
int nearestRegion(const std::map<int, double>& latency_ms);

// STUN targets from a relay map: every node's stun_ports on its stun_host — when empty, the
// host of the node's url, or `control_host` (the control server's host) when the url is empty
// too. Only literal addresses are used unless `resolve_hostnames`: then host names go through
// getaddrinfo (the first IPv4 and the first IPv6 address), which BLOCKS — call it off the
// loop (a Worker) and hand the result back. Nodes that give no target are named in `skipped`.
struct StunTargets {
  std::vector<StunTarget> targets;
  std::vector<std::string> skipped;  // "region 2 node \"b\": relay.example is not an IP address"
};
StunTargets stunTargetsFromRelayMap(const v1::RelayMap& map, const std::string& control_host,
                                    bool resolve_hostnames = false);

}  // namespace wsa::overlay
