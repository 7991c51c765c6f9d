#pragma once
// The relay side of a device's I/O, inside the Engine (its relay slot): which endpoints are
// relay stand-ins (wg/relay_endpoints.h) and the relay stream datagrams for them go to (the
// slot). Relayed datagrams enter the engine as coming from their sender's stand-in
// (Engine::deliverRelayed). The slot outlives its streams and keeps their
// counts: a stream taken out of it adds its counts to the totals.

#include <cstdint>
#include <memory>
#include <span>

#include "wsa/control/relay_stream.h"
#include "wsa/wg/relay_endpoints.h"

namespace wsa::overlay {

class RelayPath {
 public:
  // For Device::Io::send. False when `to` is not a stand-in (the caller sends over UDP); true
  // when the datagram went to the relay or was dropped (no stream, or a stand-in with no key).
  bool send(const wg::Endpoint& to, std::span<const uint8_t> datagram);
  wg::Endpoint endpointFor(const wg::PublicKey& key) { return endpoints_.endpointFor(key); }

  // Puts a stream into the slot (null: empties it). The stream taken out adds its counts to
  // the totals (its queue no longer counts); each stream put in counts as one opened.
  void setStream(std::shared_ptr<control::RelayStream> stream);
  const std::shared_ptr<control::RelayStream>& stream() const { return stream_; }
  bool ready() const { return stream_ && stream_->ready(); }
  const wg::RelayEndpoints& endpoints() const { return endpoints_; }
  // Datagrams for a stand-in with no stream to carry them.
  uint64_t unroutable() const { return unroutable_; }
  // Streams put into the slot so far.
  uint64_t streams() const { return streams_; }
  // The counts of every stream so far, the current one included (`queued` is the current
  // one's).
  control::RelayStreamStats stats() const;

 private:
  wg::RelayEndpoints endpoints_;
  std::shared_ptr<control::RelayStream> stream_;
  uint64_t unroutable_ = 0;
  uint64_t streams_ = 0;
  control::RelayStreamStats totals_;  // of the streams taken out
};

}  // namespace wsa::overlay
