#include "controld/ticket_relay.h"

#include "wsa/common/metrics.h"

namespace wsa::controld {

namespace ov = overlay::v1;

namespace {
constexpr size_t kWireGuardKeyBytes = 32;
constexpr TicketCheck kAllChecks[] = {TicketCheck::kAccepted,     TicketCheck::kMissing,
                                      TicketCheck::kBadSignature, TicketCheck::kExpired,
                                      TicketCheck::kStale,        TicketCheck::kWrongKey};
}  // namespace

TicketRelay::TicketRelay(RelayTicketVerifier verifier, const Clock& clock, size_t max_streams)
    : verifier_(std::move(verifier)), clock_(clock), max_streams_(max_streams) {}

int64_t TicketRelay::nowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             clock_.systemNow().time_since_epoch())
      .count();
}

TicketRelay::Ticket TicketRelay::fromBody(const ov::RelayTicketBody& body) {
  Ticket t;
  t.key = body.key();
  t.may_reach.insert(body.may_reach().begin(), body.may_reach().end());
  t.not_after_unix_ms = body.not_after_unix_ms();
  t.serial = body.serial();
  return t;
}

std::optional<RelayRefusal> TicketRelay::openRelayStream(StreamHandle* stream) {
  std::lock_guard lock(mu_);
  if (shut_down_) {
    return RelayRefusal{RelayRefusal::Code::kUnavailable, "server is shutting down"};
  }
  if (open_.size() >= max_streams_) {
    ++streams_refused_;
    return RelayRefusal{RelayRefusal::Code::kResourceExhausted,
                        "this relay serves " + std::to_string(max_streams_) +
                            " streams already (--max-relay-streams)"};
  }
  open_.insert(stream);
  return std::nullopt;
}

void TicketRelay::relayStreamDone(RelaySink* sink) {
  std::lock_guard lock(mu_);
  router_.unbind(sink);
  tickets_.erase(sink);
  open_.erase(sink);
}

std::optional<RelayRefusal> TicketRelay::hello(RelaySink* sink, const ov::RelayRequest& hello) {
  const std::string& key = hello.hello_key();
  if (key.size() != kWireGuardKeyBytes) {
    return RelayRefusal{RelayRefusal::Code::kInvalidArgument,
                        "hello_key must be a 32-byte WireGuard public key"};
  }
  ov::RelayTicketBody body;
  // Signature checks run outside the lock: they are the expensive part.
  TicketCheck check = verifier_.verify(hello.ticket(), key, nowMs(), &body);
  std::shared_ptr<StreamHandle> replaced;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) {
      return RelayRefusal{RelayRefusal::Code::kUnavailable, "server is shutting down"};
    }
    if (check == TicketCheck::kAccepted) {
      RelaySink* holder = router_.sinkFor(key);
      auto held = holder != nullptr ? tickets_.find(holder) : tickets_.end();
      // An older ticket for a key that a newer one holds is not taken (a replayed hello).
      if (held != tickets_.end() && holder != sink && body.serial() < held->second.serial) {
        check = TicketCheck::kStale;
      }
    }
    count(check);
    if (check != TicketCheck::kAccepted) {
      const char* why = check == TicketCheck::kMissing
                            ? "a relay-only node needs a relay ticket with the hello (the control "
                              "server sends one in CoordinateResponse.relay_ticket)"
                            : ticketCheckName(check);
      return RelayRefusal{RelayRefusal::Code::kPermissionDenied,
                          std::string("relay ticket refused: ") + why};
    }
    RelaySink* old = router_.bind(sink, key);
    if (old != nullptr) {
      tickets_.erase(old);
      replaced = old->shared_from_this();
    }
    tickets_[sink] = fromBody(body);
  }
  if (replaced) replaced->closeStream("replaced by a newer relay stream");
  return std::nullopt;
}

TicketCheck TicketRelay::updateTicket(RelaySink* sink, const ov::RelayTicket& ticket) {
  std::string key;
  {
    std::lock_guard lock(mu_);
    auto it = tickets_.find(sink);
    if (it == tickets_.end()) return TicketCheck::kMissing;  // not bound: nothing to refresh
    key = it->second.key;
  }
  ov::RelayTicketBody body;
  TicketCheck check = verifier_.verify(ticket, key, nowMs(), &body);
  std::lock_guard lock(mu_);
  auto it = tickets_.find(sink);
  if (it == tickets_.end()) return TicketCheck::kMissing;
  if (check == TicketCheck::kAccepted && body.serial() <= it->second.serial) {
    check = TicketCheck::kStale;
  }
  count(check);
  if (check == TicketCheck::kAccepted) it->second = fromBody(body);
  return check;
}

void TicketRelay::ticket(RelaySink* sink, const ov::RelayTicket& ticket) {
  (void)updateTicket(sink, ticket);
}

void TicketRelay::relay(RelaySink* from, const std::string& dest_key, const std::string& payload) {
  int64_t now = nowMs();
  std::lock_guard lock(mu_);
  router_.route(from, dest_key, payload,
                [&](const RelayRouter::Binding& src, const RelayRouter::Binding& dst) {
                  auto s = tickets_.find(from);
                  auto d = tickets_.find(router_.sinkFor(dst.key));
                  if (s == tickets_.end() || d == tickets_.end()) return false;
                  auto live = [now](const Ticket& t) {
                    return now <= t.not_after_unix_ms + kRelayTicketSkewMs;
                  };
                  // As strict as the built-in relay's tunnel rule: both sides must say so.
                  return live(s->second) && live(d->second) &&
                         s->second.may_reach.count(dst.key) > 0 &&
                         d->second.may_reach.count(src.key) > 0;
                });
}

size_t TicketRelay::openStreamCount() const {
  std::lock_guard lock(mu_);
  return open_.size();
}

RelayCounters TicketRelay::counters() const {
  std::lock_guard lock(mu_);
  return router_.counters();
}

uint64_t TicketRelay::tickets(TicketCheck check) const {
  std::lock_guard lock(mu_);
  return ticket_counts_[static_cast<size_t>(check)];
}

uint64_t TicketRelay::streamsRefused() const {
  std::lock_guard lock(mu_);
  return streams_refused_;
}

void TicketRelay::collectMetrics(metrics::Families& out) const {
  std::lock_guard lock(mu_);
  router_.collect(out);
  auto t = out.counters("wsa_controld_relay_tickets_total",
                        "Relay tickets presented to this relay-only node, by outcome");
  for (TicketCheck c : kAllChecks) {
    t.add(ticket_counts_[static_cast<size_t>(c)], {{"result", ticketCheckName(c)}});
  }
  out.gauge("wsa_controld_relay_streams", "Open relay streams", open_.size());
  out.counter("wsa_controld_relay_streams_refused_total",
              "Relay streams refused because --max-relay-streams were open", streams_refused_);
}

void TicketRelay::shutdown(const std::string& reason) {
  std::vector<std::shared_ptr<StreamHandle>> to_close;
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    for (auto* s : open_) to_close.push_back(s->shared_from_this());
  }
  for (auto& s : to_close) s->closeStream(reason);
}

}  // namespace wsa::controld
