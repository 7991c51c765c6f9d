#pragma once

#include <string>

#include "wsa/common/result.h"
#include "wsa/net/stream.h"

namespace wsa::net {

Result<ListenAddress> parseListenAddress(const std::string& text);
// "host:port" with brackets added for IPv6 hosts.
std::string joinHostPort(const std::string& host, uint16_t port);

}  // namespace wsa::net
