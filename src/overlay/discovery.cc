#include "wsa/overlay/discovery.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "wsa/common/logging.h"
#include "wsa/control/url.h"
#include "wsa/overlay/v1/relay_map.pb.h"
#include "wsa/stun/stun.h"

namespace wsa::overlay {

namespace {

std::string endpointsText(const std::vector<wg::Endpoint>& eps) {
  std::string out;
  for (const auto& e : eps) out += (out.empty() ? "" : " ") + e.toString();
  return out.empty() ? "none" : out;
}

std::vector<wg::Endpoint> sorted(std::vector<wg::Endpoint> eps) {
  std::sort(eps.begin(), eps.end(), [](const wg::Endpoint& a, const wg::Endpoint& b) {
    return std::tie(a.v6, a.addr, a.port) < std::tie(b.v6, b.addr, b.port);
  });
  return eps;
}

}  // namespace

const char* mappingVariesName(MappingVaries v) {
  switch (v) {
    case MappingVaries::kNo:
      return "no";
    case MappingVaries::kYes:
      return "yes";
    case MappingVaries::kUnknown:
      break;
  }
  return "unknown";
}

Discovery::Discovery(Clock& clock, Options options, Send send, OnReport on_report)
    : clock_(clock),
      options_(std::move(options)),
      send_(std::move(send)),
      on_report_(std::move(on_report)),
      log_(logging::get(options_.logger)),
      timer_(clock.createTimer()) {
  if (options_.retries < 0) options_.retries = 0;
}

Discovery::~Discovery() = default;

void Discovery::setTargets(std::vector<StunTarget> targets) {
  std::vector<StunTarget> unique;
  for (auto& t : targets) {
    if (!t.server.valid()) continue;
    bool dup = std::any_of(unique.begin(), unique.end(),
                           [&](const StunTarget& u) { return u.server == t.server; });
    if (!dup) unique.push_back(t);
  }
  if (unique == targets_) return;
  targets_ = std::move(unique);
  log_->debug("STUN targets: {}", targets_.size());
  if (started_) startRound();
}

void Discovery::start() {
  if (started_) return;
  started_ = true;
  startRound();
}

void Discovery::rediscover() {
  if (!started_) {
    start();
    return;
  }
  startRound();
}

void Discovery::stop() {
  started_ = false;
  in_round_ = false;
  timer_->cancel();
  outstanding_.clear();
  answers_.clear();
}

void Discovery::startRound() {
  timer_->cancel();
  outstanding_.clear();
  answers_.assign(targets_.size(), Answer{});
  step_ = 0;
  in_round_ = true;
  sending_ = true;
  for (size_t i = 0; i < targets_.size() && in_round_; ++i) sendRequest(i);
  sending_ = false;
  if (!in_round_) return;  // send() stopped or restarted us
  if (targets_.empty()) {
    finishRound();
    return;
  }
  maybeFinish();
  if (in_round_) {
    timer_->schedule(options_.timeout / (options_.retries + 1), [this] { onStep(); });
  }
}

void Discovery::sendRequest(size_t target) {
  stun::TransactionId id = stun::randomTransactionId();
  outstanding_[id] = Outstanding{target, clock_.now()};
  ++stats_.requests;
  auto request = stun::buildBindingRequest(id, {options_.software, true});
  send_(targets_[target].server, request);
}

void Discovery::onStep() {
  ++step_;
  if (step_ > options_.retries) {
    finishRound();
    return;
  }
  // `answers_` can shrink if send() re-enters setTargets: index by the current size.
  for (size_t i = 0; i < answers_.size() && in_round_; ++i) {
    if (!answers_[i].done) sendRequest(i);
  }
  if (in_round_ && !timer_->armed()) {
    timer_->schedule(options_.timeout / (options_.retries + 1), [this] { onStep(); });
  }
}

void Discovery::maybeFinish() {
  if (!in_round_ || sending_) return;
  if (std::all_of(answers_.begin(), answers_.end(), [](const Answer& a) { return a.done; })) {
    finishRound();
  }
}

void Discovery::finishRound() {
  timer_->cancel();
  in_round_ = false;
  outstanding_.clear();
  for (const auto& a : answers_) {
    if (!a.done) ++stats_.timeouts;
  }
  ++stats_.rounds;
  last_ = buildReport();
  bool report = !reported_once_ || changed(reported_, last_);
  log_->debug("STUN round: {}/{} answered, reflexive {}, mapping varies: {}", last_.answered,
              last_.targets, endpointsText(last_.reflexive), mappingVariesName(last_.varies));
  // The next round first: on_report may call back (rediscover, setTargets, stop).
  if (started_) timer_->schedule(options_.interval, [this] { startRound(); });
  if (report) {
    if (reported_once_ && sorted(reported_.reflexive) != sorted(last_.reflexive)) {
      log_->info("reflexive address(es) changed: {} -> {}", endpointsText(reported_.reflexive),
                 endpointsText(last_.reflexive));
    }
    reported_ = last_;
    reported_once_ = true;
    if (on_report_) on_report_(last_);
  }
}

DiscoveryReport Discovery::buildReport() const {
  DiscoveryReport r;
  r.complete = true;
  r.targets = targets_.size();
  std::vector<size_t> by_arrival;
  for (size_t i = 0; i < answers_.size() && i < targets_.size(); ++i) {
    if (answers_[i].done) by_arrival.push_back(i);
  }
  std::sort(by_arrival.begin(), by_arrival.end(),
            [&](size_t a, size_t b) { return answers_[a].order < answers_[b].order; });
  r.answered = by_arrival.size();
  bool agree = false;
  bool disagree = false;
  for (bool v6 : {false, true}) {
    std::vector<wg::Endpoint> seen;  // mappings seen by servers of this family
    for (size_t i : by_arrival) {
      if (targets_[i].server.v6 == v6) seen.push_back(answers_[i].mapped);
    }
    if (seen.size() < 2) continue;
    if (std::all_of(seen.begin(), seen.end(),
                    [&](const wg::Endpoint& e) { return e == seen[0]; })) {
      agree = true;
    } else {
      disagree = true;
    }
  }
  r.varies = disagree ? MappingVaries::kYes : agree ? MappingVaries::kNo : MappingVaries::kUnknown;
  for (size_t i : by_arrival) {
    const Answer& a = answers_[i];
    if (std::find(r.reflexive.begin(), r.reflexive.end(), a.mapped) == r.reflexive.end()) {
      r.reflexive.push_back(a.mapped);
    }
    double ms = std::chrono::duration<double, std::milli>(a.rtt).count();
    auto [it, inserted] = r.latency_ms.emplace(targets_[i].region, ms);
    if (!inserted) it->second = std::min(it->second, ms);
  }
  return r;
}

bool Discovery::changed(const DiscoveryReport& before, const DiscoveryReport& now) {
  if (sorted(before.reflexive) != sorted(now.reflexive)) return true;
  if (before.varies != now.varies) return true;
  if (before.latency_ms.size() != now.latency_ms.size()) return true;
  for (const auto& [region, ms] : now.latency_ms) {
    auto it = before.latency_ms.find(region);
    if (it == before.latency_ms.end()) return true;
    double d = std::fabs(ms - it->second);
    if (d > 5.0 && d > 0.2 * it->second) return true;
  }
  return false;
}

bool Discovery::onDatagram(const wg::Endpoint& from, std::span<const uint8_t> datagram) {
  stun::Header h = stun::peekHeader(datagram);
  if (h.type != stun::kBindingSuccess && h.type != stun::kBindingError) return false;
  auto r = stun::parseBindingResponse(datagram);
  if (!r) {
    ++stats_.malformed;
    log_->debug("STUN response from {} dropped: {}", from.toString(), r.error());
    return true;
  }
  auto it = outstanding_.find(r->id);
  if (it == outstanding_.end() || it->second.target >= targets_.size() ||
      !(targets_[it->second.target].server == from)) {
    ++stats_.unmatched;
    log_->debug("STUN response from {} matches no request of ours", from.toString());
    return true;
  }
  size_t target = it->second.target;
  Answer& a = answers_[target];
  a.done = true;
  a.order = ++arrivals_;
  a.mapped = r->mapped;
  a.rtt = clock_.now() - it->second.sent;
  ++stats_.responses;
  // The target's other requests (retries) are answered too: their answers count as unmatched.
  for (auto o = outstanding_.begin(); o != outstanding_.end();) {
    o = o->second.target == target ? outstanding_.erase(o) : std::next(o);
  }
  maybeFinish();
  return true;
}

int nearestRegion(const std::map<int, double>& latency_ms) {
  int best = 0;
  double best_ms = 0;
  for (const auto& [region, ms] : latency_ms) {
    if (best == 0 || ms < best_ms) {
      best = region;
      best_ms = ms;
    }
  }
  return best;
}

StunTargets stunTargetsFromRelayMap(const v1::RelayMap& map, const std::string& control_host,
                                    bool resolve_hostnames) {
  StunTargets out;
  for (const auto& region : map.regions()) {
    for (const auto& node : region.nodes()) {
      if (node.stun_ports_size() == 0) continue;
      std::string where =
          "region " + std::to_string(region.region_id()) + " node \"" + node.name() + "\"";
      std::string host = node.stun_host();
      if (host.empty() && !node.url().empty()) {
        auto url = control::parseControlUrl(node.url());
        if (!url) {
          out.skipped.push_back(where + ": " + url.error());
          continue;
        }
        host = url->host;  // empty for unix:
      } else if (host.empty()) {
        host = control_host;
      }
      if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
      }
      if (host.empty()) {
        out.skipped.push_back(where + ": no STUN host (the server is on a Unix socket)");
        continue;
      }
      std::vector<wg::Endpoint> addrs;
      bool v6 = host.find(':') != std::string::npos;
      if (auto ep = wg::parseEndpoint(v6 ? "[" + host + "]:1" : host + ":1")) {
        addrs.push_back(*ep);
      } else if (!resolve_hostnames) {
        out.skipped.push_back(where + ": " + host + " is not an IP address");
        continue;
      } else {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
        if (rc != 0) {
          out.skipped.push_back(where + ": cannot resolve " + host + ": " + gai_strerror(rc));
          continue;
        }
        bool have4 = false;
        bool have6 = false;
        for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
          wg::Endpoint e = wg::Endpoint::fromSockaddr(ai->ai_addr);
          bool& have = e.v6 ? have6 : have4;
          if (have) continue;
          have = true;
          addrs.push_back(e);
        }
        ::freeaddrinfo(res);
      }
      for (const auto& a : addrs) {
        for (uint32_t port : node.stun_ports()) {
          if (port == 0 || port > 65535) {
            out.skipped.push_back(where + ": bad STUN port " + std::to_string(port));
            continue;
          }
          StunTarget t;
          t.region = region.region_id();
          t.server = a;
          t.server.port = static_cast<uint16_t>(port);
          out.targets.push_back(t);
        }
      }
    }
  }
  return out;
}

}  // namespace wsa::overlay
