#pragma once
// Forwards overlay TCP connections to the workspace's own loopback: a connection to overlay
// port P is joined (net::splice) to a new connection to 127.0.0.1:P, or [::1]:P when nothing
// listens on the IPv4 loopback. This is how every port without a service of the agent's own
// reaches what the user runs in the workspace.

#include <chrono>
#include <cstdint>
#include <memory>

#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::netstack {

struct ForwardStats {
  uint64_t connections = 0;  // joined to a local listener
  uint64_t refused = 0;      // nothing listens locally (or the connect timed out)
  uint64_t rejected = 0;     // over max_active
  uint64_t unclaimed = 0;    // local connections opened by the gate that nothing claimed
  uint64_t bytes_to_local = 0, bytes_from_local = 0;  // of finished connections
  size_t active = 0;
};

class LocalForwarder {
 public:
  struct Options {
    size_t max_active = 1024;
    std::chrono::milliseconds connect_timeout{10000};
  };
  LocalForwarder(asio::io_context& io, Options options);
  ~LocalForwarder();
  // Takes an accepted overlay connection to `port` from `remote` ("ip:port"): joined to the
  // local connection the gate opened for it, or to a new one.
  void forward(net::ByteStreamPtr overlay, uint16_t port, const std::string& remote = "");
  // The Netstack gate: connects to the loopback first and admits the overlay connection only
  // if that worked, so a closed port is refused (a reset to the SYN) rather than accepted and
  // then reset. The local connection waits (≤ connect_timeout) for forward() to claim it.
  void gate(uint16_t port, const std::string& remote, std::function<void(bool)> admit);
  const ForwardStats& stats() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace wsa::netstack
