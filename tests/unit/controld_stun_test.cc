#include <gtest/gtest.h>

#include "controld/stun_server.h"

namespace wsa::controld {
namespace {

using namespace std::chrono_literals;
using Verdict = StunLimiter::Verdict;

wg::Endpoint source(int n, uint16_t port = 1000) {
  auto e = wg::parseEndpoint("198.18.0." + std::to_string(n) + ":" + std::to_string(port));
  EXPECT_TRUE(e);
  return *e;
}

TEST(StunLimiterTest, PerSourceBurstThenRate) {
  auto t = std::chrono::steady_clock::now();
  StunLimiter l({.source_rate = 2, .source_burst = 3, .global_rate = 1000, .global_burst = 1000},
                t);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(l.allow(source(1), t), Verdict::kAllowed);
  EXPECT_EQ(l.allow(source(1), t), Verdict::kSourceLimited);
  EXPECT_EQ(l.allow(source(1, 2000), t), Verdict::kSourceLimited);  // the port does not matter
  EXPECT_EQ(l.allow(source(2), t), Verdict::kAllowed);              // others are not affected
  t += 500ms;                                                       // one token back
  EXPECT_EQ(l.allow(source(1), t), Verdict::kAllowed);
  EXPECT_EQ(l.allow(source(1), t), Verdict::kSourceLimited);
  t += 1h;  // refills to the burst, not beyond
  for (int i = 0; i < 3; ++i) EXPECT_EQ(l.allow(source(1), t), Verdict::kAllowed);
  EXPECT_EQ(l.allow(source(1), t), Verdict::kSourceLimited);
}

TEST(StunLimiterTest, GlobalBoundAcrossSourcesAndRefusedRequestsDoNotSpendIt) {
  auto t = std::chrono::steady_clock::now();
  StunLimiter l({.source_rate = 1, .source_burst = 2, .global_rate = 1, .global_burst = 4}, t);
  // One source hammering: only its burst reaches the global bucket.
  for (int i = 0; i < 100; ++i) l.allow(source(1), t);
  EXPECT_EQ(l.allow(source(2), t), Verdict::kAllowed);
  EXPECT_EQ(l.allow(source(3), t), Verdict::kAllowed);
  EXPECT_EQ(l.allow(source(4), t), Verdict::kGlobalLimited);  // 4 spent: 2 + 1 + 1
  t += 1s;
  EXPECT_EQ(l.allow(source(5), t), Verdict::kAllowed);
}

TEST(StunLimiterTest, AtTheTableBoundTheLeastRecentlySeenSourceIsEvicted) {
  auto t = std::chrono::steady_clock::now();
  StunLimiter l({.source_rate = 0.001,
                 .source_burst = 1,
                 .global_rate = 1000,
                 .global_burst = 1000,
                 .max_sources = 3},
                t);
  for (int n = 1; n <= 3; ++n) EXPECT_EQ(l.allow(source(n), t), Verdict::kAllowed);
  EXPECT_EQ(l.allow(source(1), t), Verdict::kSourceLimited);  // seen again: 2 is now the oldest
  EXPECT_EQ(l.sources(), 3u);
  EXPECT_EQ(l.allow(source(4), t), Verdict::kAllowed);
  EXPECT_EQ(l.sources(), 3u);
  EXPECT_EQ(l.evicted(), 1u);
  // 2 was evicted (a new, full bucket); 1 and 3 were kept (still empty).
  EXPECT_EQ(l.allow(source(1), t), Verdict::kSourceLimited);
  EXPECT_EQ(l.allow(source(3), t), Verdict::kSourceLimited);
  EXPECT_EQ(l.allow(source(2), t), Verdict::kAllowed);
  EXPECT_EQ(l.evicted(), 2u);
  EXPECT_EQ(l.sources(), 3u);
}

}  // namespace
}  // namespace wsa::controld
