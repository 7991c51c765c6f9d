#pragma once
// Between the coordination protocol's Node and the engine's peer configuration, and the UDP
// endpoints a node publishes.

#include <cstdint>
#include <string>
#include <vector>

#include "wsa/common/result.h"
#include "wsa/wg/device.h"

namespace wsa::overlay::v1 {
class Node;
}

namespace wsa::overlay {

// The peer a node describes: its key, its allowed IPs (its addresses when it names none; bad
// entries are skipped) and its first usable UDP endpoint, if any. An error for a key that is
// not 32 bytes.
Result<wg::PeerConfig> peerFromNode(const overlay::v1::Node& node);

// A node's candidate endpoints: `candidates` when it has them, else `endpoints` (unusable
// entries skipped).
std::vector<wg::Endpoint> candidatesOf(const overlay::v1::Node& node);

// Fills a node's key, addresses and allowed IPs (both `cidrs`) and endpoints.
void describeNode(const wg::PublicKey& key, const std::vector<std::string>& cidrs,
                  const std::vector<std::string>& endpoints, overlay::v1::Node* node);

// The UDP endpoints to publish for a bind on `port`: `configured` ("host" or "host:port"; the
// port defaults to `port`), or when that is empty the addresses of this machine's interfaces
// (up, loopback and IPv6 link-local left out) with `port`.
std::vector<std::string> publishedEndpoints(const std::vector<std::string>& configured,
                                            uint16_t port);

}  // namespace wsa::overlay
