#pragma once
// The relay of a relay-only node (controld --relay-only): no coordination, no tokens. A stream's
// hello carries a relay ticket the control server signed; the ticket names the key the stream
// receives for and the keys it may reach. A packet goes from A to B only when both current
// tickets list each other and neither has expired. Thread-safe; no gRPC types.

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "controld/relay_router.h"
#include "controld/relay_ticket.h"
#include "wsa/common/clock.h"

namespace wsa::controld {

class TicketRelay final : public RelayBackend {
 public:
  static constexpr size_t kDefaultMaxStreams = 4096;

  // `clock` gives the time tickets expire by (systemNow()).
  TicketRelay(RelayTicketVerifier verifier, const Clock& clock,
              size_t max_streams = kDefaultMaxStreams);

  // RelayBackend. Streams past max_streams are refused (RESOURCE_EXHAUSTED) and counted.
  std::optional<RelayRefusal> openRelayStream(StreamHandle* stream) override;
  void relayStreamDone(RelaySink* sink) override;
  // The ticket must verify for hello_key (else PERMISSION_DENIED); counted by outcome.
  std::optional<RelayRefusal> hello(RelaySink* sink,
                                    const overlay::v1::RelayRequest& hello) override;
  // A fresher ticket for the same key replaces the stream's (a higher serial); others are
  // counted and ignored (the stream keeps its ticket).
  void ticket(RelaySink* sink, const overlay::v1::RelayTicket& ticket) override;
  void relay(RelaySink* from, const std::string& dest_key, const std::string& payload) override;

  // The same for callers that want the outcome (tests).
  TicketCheck updateTicket(RelaySink* sink, const overlay::v1::RelayTicket& ticket);

  size_t openStreamCount() const;
  RelayCounters counters() const;
  uint64_t tickets(TicketCheck check) const;
  uint64_t streamsRefused() const;
  // wsa_controld_relay_packets_total{result}, wsa_controld_relay_tickets_total{result},
  // wsa_controld_relay_streams, wsa_controld_relay_streams_refused_total.
  void collectMetrics(metrics::Families& out) const;
  // Ends every stream and refuses new ones.
  void shutdown(const std::string& reason);

 private:
  struct Ticket {
    std::string key;
    std::set<std::string> may_reach;
    int64_t not_after_unix_ms = 0;
    uint64_t serial = 0;
  };
  int64_t nowMs() const;
  void count(TicketCheck c) { ++ticket_counts_[static_cast<size_t>(c)]; }
  static Ticket fromBody(const overlay::v1::RelayTicketBody& body);

  RelayTicketVerifier verifier_;
  const Clock& clock_;
  const size_t max_streams_;
  mutable std::mutex mu_;
  bool shut_down_ = false;
  std::set<StreamHandle*> open_;
  RelayRouter router_;
  std::map<RelaySink*, Ticket> tickets_;
  uint64_t ticket_counts_[6] = {};
  uint64_t streams_refused_ = 0;
};

}  // namespace wsa::controld
