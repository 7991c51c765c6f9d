// Coordination nodes to engine peers and back.
#include "wsa/overlay/node.h"

#include <gtest/gtest.h>

#include "wsa/overlay/v1/node.pb.h"

namespace wsa::overlay {
namespace {

TEST(OverlayNodeTest, PeerFromNodeTakesKeyAllowedIpsAndTheFirstUsableEndpoint) {
  wg::PublicKey key = wg::publicKeyOf(wg::generatePrivateKey());
  overlay::v1::Node n;
  describeNode(key, {"100.64.0.9/32", "fd7a:115c:a1e0::9/128"},
               {"not an endpoint", "127.0.0.1:4242", "[::1]:1"}, &n);
  auto pc = peerFromNode(n);
  ASSERT_TRUE(pc) << pc.error();
  EXPECT_EQ(pc->public_key, key);
  ASSERT_TRUE(pc->allowed_ips);
  EXPECT_EQ(pc->allowed_ips->size(), 2u);
  ASSERT_TRUE(pc->endpoint);
  EXPECT_EQ(pc->endpoint->toString(), "127.0.0.1:4242");

  // Allowed IPs fall back to the addresses; bad entries are skipped; no endpoint is fine.
  overlay::v1::Node m;
  m.set_key(n.key());
  m.add_addresses("100.64.0.10/32");
  m.add_addresses("nonsense/99");
  auto pm = peerFromNode(m);
  ASSERT_TRUE(pm);
  ASSERT_EQ(pm->allowed_ips->size(), 1u);
  EXPECT_EQ(pm->allowed_ips->front().toString(), "100.64.0.10/32");
  EXPECT_FALSE(pm->endpoint);

  m.set_key("short");
  auto bad = peerFromNode(m);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("5 bytes"), std::string::npos) << bad.error();
}

}  // namespace
}  // namespace wsa::overlay
