#pragma once
// Between the coordination protocol's Node and the engine's peer configuration.

#include "wsa/common/result.h"
#include "wsa/wg/device.h"

namespace wsa::overlay::v1 {
class Node;
}

namespace wsa::wg {

// The peer a node describes: its key, its allowed IPs (its addresses when it names none; bad
// entries are skipped) and its first usable UDP endpoint, if any. An error for a key that is
// not 32 bytes.
Result<PeerConfig> peerFromNode(const overlay::v1::Node& node);

// Fills a node's key, addresses and allowed IPs (both `cidrs`) and endpoints.
void describeNode(const PublicKey& key, const std::vector<std::string>& cidrs,
                  const std::vector<std::string>& endpoints, overlay::v1::Node* node);

}  // namespace wsa::wg
