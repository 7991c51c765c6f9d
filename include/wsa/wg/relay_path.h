#pragma once
// The relay side of a device's I/O, shared by the agent and the client: which endpoints are
// relay stand-ins (wg/relay_endpoints.h), the relay stream datagrams for them go to, and the
// way relayed datagrams enter the engine.

#include <cstdint>
#include <memory>
#include <span>

#include "wsa/control/relay_stream.h"
#include "wsa/wg/relay_endpoints.h"

namespace wsa::wg {

class Device;

class RelayPath {
 public:
  // For Device::Io::send. False when `to` is not a stand-in (the caller sends over UDP); true
  // when the datagram went to the relay or was dropped (no stream, or a stand-in with no key).
  bool send(const Endpoint& to, std::span<const uint8_t> datagram);
  // Hands relayed datagrams to the engine, each from its sender's stand-in.
  void deliver(Device& device, control::RelayStream::Packets packets);
  Endpoint endpointFor(const PublicKey& key) { return endpoints_.endpointFor(key); }

  void setStream(std::shared_ptr<control::RelayStream> stream) { stream_ = std::move(stream); }
  const std::shared_ptr<control::RelayStream>& stream() const { return stream_; }
  bool ready() const { return stream_ && stream_->ready(); }
  const RelayEndpoints& endpoints() const { return endpoints_; }
  // Datagrams for a stand-in with no stream to carry them.
  uint64_t unroutable() const { return unroutable_; }

 private:
  RelayEndpoints endpoints_;
  std::shared_ptr<control::RelayStream> stream_;
  uint64_t unroutable_ = 0;
};

}  // namespace wsa::wg
