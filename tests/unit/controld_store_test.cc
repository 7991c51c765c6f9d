#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "controld/store.h"
#include "support/util.h"

namespace wsa::controld {
namespace {

namespace v1 = wsa::agent::v1;

SystemTime at(int64_t s) {
  return fromUnixNanos(s * 1000000000);
}

v1::BatchCreateLogsRequest logs(const std::string& instance, uint64_t first_seq,
                                std::vector<std::string> lines) {
  v1::BatchCreateLogsRequest r;
  r.set_log_source_id("src");
  r.set_agent_instance_id(instance);
  uint64_t seq = first_seq;
  for (auto& l : lines) {
    auto* log = r.add_logs();
    log->set_output(l);
    log->set_level(v1::LOG_LEVEL_INFO);
    log->set_sequence(seq++);
  }
  return r;
}

class StoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> open() {
    auto s = Store::open(dir_.file("db.sqlite"));
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error());
    return std::move(*s);
  }
  test::TempDir dir_;
};

TEST_F(StoreTest, AgentIdentityIsStableAcrossReopen) {
  std::string id;
  {
    auto s = open();
    auto a = s->ensureAgent("dev");
    id = a.id;
    EXPECT_EQ(s->ensureAgent("dev").id, id);
    EXPECT_EQ(a.ipv4.rfind("100.", 0), 0u);
    EXPECT_EQ(a.ipv6.rfind("fd7a:115c:a1e0:", 0), 0u);
    EXPECT_NE(s->ensureAgent("other").ipv4, a.ipv4);
  }
  auto s = open();
  EXPECT_EQ(s->ensureAgent("dev").id, id);
}

TEST_F(StoreTest, LifecycleKeepsOrderAndIgnoresRetries) {
  auto s = open();
  auto a = s->ensureAgent("dev");
  EXPECT_TRUE(s->appendLifecycle(a.id, v1::LIFECYCLE_STATE_STARTING, at(10), at(10)));
  EXPECT_TRUE(s->appendLifecycle(a.id, v1::LIFECYCLE_STATE_READY, at(11), at(11)));
  // A retry of an acknowledged report (same state and time) is not a new state.
  EXPECT_FALSE(s->appendLifecycle(a.id, v1::LIFECYCLE_STATE_READY, at(11), at(12)));
  auto v = s->agentView(a);
  ASSERT_EQ(v["lifecycle"].size(), 2u);
  EXPECT_EQ(v["lifecycle"][0]["state"], "starting");
  EXPECT_EQ(v["lifecycle"][1]["state"], "ready");
}

TEST_F(StoreTest, LogsDeduplicatedBySequence) {
  auto s = open();
  auto a = s->ensureAgent("dev");
  auto r1 = s->appendLogs(a.id, logs("i1", 1, {"a", "b"}), "src", 1000, at(1));
  EXPECT_EQ(r1.stored, 2u);
  // Re-sent after a lost acknowledgement, plus one new line.
  auto r2 = s->appendLogs(a.id, logs("i1", 1, {"a", "b", "c"}), "src", 1000, at(2));
  EXPECT_EQ(r2.stored, 1u);
  EXPECT_EQ(r2.duplicates, 2u);
  // Another agent process starts its own sequence.
  auto r3 = s->appendLogs(a.id, logs("i2", 1, {"d"}), "src", 1000, at(3));
  EXPECT_EQ(r3.stored, 1u);
  auto v = s->agentView(a);
  ASSERT_EQ(v["logs"].size(), 4u);
  EXPECT_EQ(v["logs"][2]["output"], "c");
  EXPECT_EQ(v["logs"][3]["output"], "d");
  EXPECT_EQ(v["logs_length"], 4);
}

TEST_F(StoreTest, LogBudgetRefusesWholeBatchAndStaysExceeded) {
  auto s = open();
  auto a = s->ensureAgent("dev");
  EXPECT_FALSE(
      s->appendLogs(a.id, logs("i", 1, {std::string(60, 'x')}), "src", 100, at(1)).limit_exceeded);
  auto over = s->appendLogs(a.id, logs("i", 2, {std::string(30, 'y'), std::string(30, 'z')}), "src",
                            100, at(2));
  EXPECT_TRUE(over.limit_exceeded);
  EXPECT_EQ(over.stored, 0u);
  // Once exceeded, even small batches are refused.
  EXPECT_TRUE(s->appendLogs(a.id, logs("i", 4, {"s"}), "src", 100, at(3)).limit_exceeded);
  auto v = s->agentView(a);
  EXPECT_EQ(v["logs"].size(), 1u);
  EXPECT_TRUE(v["logs_overflowed"].get<bool>());
  EXPECT_LE(v["logs_length"].get<int>(), 100);
}

TEST_F(StoreTest, InvalidUtf8IsSanitizedNotRejected) {
  auto s = open();
  auto a = s->ensureAgent("dev");
  s->appendLogs(a.id, logs("i", 1, {"bad \xff byte"}), "src", 1000, at(1));
  auto v = s->agentView(a);
  EXPECT_EQ(v["logs"][0]["output"], "bad \xef\xbf\xbd byte");
}

TEST_F(StoreTest, BannerAndMetadataPersist) {
  {
    auto s = open();
    auto a = s->ensureAgent("dev");
    s->setBanner({true, "hello", "#fff"}, at(1));
    s->upsertMetadata(a.id, "load", "0.1", "", at(1));
    s->upsertMetadata(a.id, "load", "0.2", "", at(2));
  }
  auto s = open();
  auto b = s->banner();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->message, "hello");
  auto v = s->agentView(*s->findAgent("dev"));
  EXPECT_EQ(v["metadata"]["load"]["value"], "0.2");
}

}  // namespace
}  // namespace wsa::controld
