#include "wsa/wg/relay_endpoints.h"

#include <gtest/gtest.h>

namespace wsa::wg {
namespace {

PublicKey key(uint8_t b) {
  PublicKey k{};
  k.fill(b);
  return k;
}

TEST(RelayEndpointsTest, OneStandInPerKeyAndBack) {
  RelayEndpoints r;
  Endpoint a = r.endpointFor(key(1));
  Endpoint b = r.endpointFor(key(2));
  EXPECT_EQ(a.toString(), "127.3.3.40:1");
  EXPECT_EQ(b.toString(), "127.3.3.40:2");
  EXPECT_EQ(r.endpointFor(key(1)), a);  // stable
  EXPECT_TRUE(RelayEndpoints::isRelay(a));
  EXPECT_EQ(r.keyFor(a), key(1));
  EXPECT_EQ(r.keyFor(b), key(2));
  EXPECT_EQ(r.size(), 2u);
  // Real endpoints, and stand-ins never handed out, map to nothing.
  EXPECT_FALSE(RelayEndpoints::isRelay(*parseEndpoint("127.0.0.1:1")));
  EXPECT_FALSE(RelayEndpoints::isRelay(*parseEndpoint("[fd7a:115c:a1e0::1]:1")));
  EXPECT_EQ(r.keyFor(*parseEndpoint("127.3.3.40:3")), std::nullopt);
  EXPECT_EQ(r.keyFor(*parseEndpoint("198.18.0.1:1")), std::nullopt);
}

TEST(RelayEndpointsTest, AtTheBoundTheLeastRecentlyUsedStandInIsReassigned) {
  RelayEndpoints r(3);
  Endpoint a = r.endpointFor(key(1));
  r.endpointFor(key(2));
  r.endpointFor(key(3));
  EXPECT_EQ(r.keyFor(a), key(1));  // key 1 used again: key 2 is now the oldest
  Endpoint d = r.endpointFor(key(4));
  EXPECT_EQ(r.size(), 3u);
  EXPECT_EQ(r.reassigned(), 1u);
  EXPECT_EQ(d.port, 2);  // key 2's stand-in
  EXPECT_EQ(r.keyFor(d), key(4));
  EXPECT_EQ(r.keyFor(a), key(1));
  // Key 2 comes back: it gets the stand-in of the least recently used (key 3).
  Endpoint b2 = r.endpointFor(key(2));
  EXPECT_EQ(b2.port, 3);
  EXPECT_EQ(r.size(), 3u);
}

}  // namespace
}  // namespace wsa::wg
