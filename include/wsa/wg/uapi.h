#pragma once
// WireGuard's cross-platform userspace configuration protocol (wireguard.com/xplatform), so
// the standard `wg` tool configures and inspects the device: `wg set`, `wg setconf`,
// `wg show`, `wg showconf`. Served on a unix socket, normally
// /var/run/wireguard/<interface>.sock (created 0600).
//
// One extension: the request "wsa_counters=1" answers with the engine's counters as
// key=value lines (handshakes, cookies, drops by reason) for tests and operators.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "wsa/common/result.h"
#include "wsa/wg/device.h"

namespace asio {
class io_context;
}

namespace wsa::wg {

struct UapiHooks {
  std::function<uint16_t()> listen_port;
  std::function<Status(uint16_t)> set_listen_port;
};

// The body of a "get=1" answer (without errno), and of "wsa_counters=1".
std::string uapiGet(const Device& device, uint16_t listen_port);
std::string uapiCounters(const Device& device);
// Applies a "set=1" body (the lines after "set=1"). Returns 0 or an errno value.
int uapiSet(Device& device, std::string_view body, const UapiHooks& hooks, std::string* error);

class UapiServer {
 public:
  static Result<std::unique_ptr<UapiServer>> listen(asio::io_context& io, const std::string& path,
                                                    Device& device, UapiHooks hooks);
  ~UapiServer();

  class Impl;

 private:
  UapiServer() = default;
  std::shared_ptr<Impl> impl_;
};

}  // namespace wsa::wg
