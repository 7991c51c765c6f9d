#include "agent/cron.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "agent/scripts.h"

namespace wsa::agent {
namespace {

class UtcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    saved_ = tz != nullptr ? tz : "";
    had_ = tz != nullptr;
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
  void TearDown() override {
    if (had_) {
      ::setenv("TZ", saved_.c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  static SystemTime at(const char* rfc3339) { return *parseRfc3339(rfc3339); }
  static std::string next(const CronSchedule& c, const char* after) {
    auto n = c.next(at(after));
    return n ? formatRfc3339(*n) : "never";
  }
  std::string saved_;
  bool had_ = false;
};

using Cron = UtcTest;

TEST_F(Cron, SecondsFirstAndFiveFieldSpecs) {
  auto every30s = CronSchedule::parse("*/30 * * * * *");
  ASSERT_TRUE(every30s.ok()) << every30s.error();
  EXPECT_EQ(next(*every30s, "2026-11-30T10:00:00Z"), "2026-11-30T10:00:30.000000Z");
  EXPECT_EQ(next(*every30s, "2026-11-30T10:00:30Z"), "2026-11-30T10:01:00.000000Z");
  auto five = CronSchedule::parse("15 3 * * *");  // 03:15:00 daily
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(next(*five, "2026-11-30T10:00:00Z"), "2026-12-01T03:15:00.000000Z");
}

TEST_F(Cron, RangesListsStepsAndNames) {
  auto c = CronSchedule::parse("0 0 9-17/4 * JAN,jun MON-FRI");
  ASSERT_TRUE(c.ok()) << c.error();
  // 2026-12-01 is in December: next match is Friday 2027-01-01 09:00.
  EXPECT_EQ(next(*c, "2026-12-01T00:00:00Z"), "2027-01-01T09:00:00.000000Z");
  EXPECT_EQ(next(*c, "2027-01-01T09:00:00Z"), "2027-01-01T13:00:00.000000Z");
  EXPECT_EQ(next(*c, "2027-01-01T17:00:00Z"), "2027-01-04T09:00:00.000000Z");  // Monday
  auto sunday7 = CronSchedule::parse("0 0 0 * * 7");
  ASSERT_TRUE(sunday7.ok());
  EXPECT_EQ(next(*sunday7, "2026-11-30T00:00:00Z"), "2026-12-06T00:00:00.000000Z");
}

TEST_F(Cron, DayOfMonthOrDayOfWeekWhenBothRestricted) {
  auto c = CronSchedule::parse("0 0 0 13 * FRI");  // the 13th, or any Friday
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(next(*c, "2026-11-30T00:00:00Z"), "2026-12-04T00:00:00.000000Z");  // a Friday
  EXPECT_EQ(next(*c, "2026-12-12T00:00:00Z"), "2026-12-13T00:00:00.000000Z");  // the 13th
}

TEST_F(Cron, ImpossibleDateNeverFires) {
  auto c = CronSchedule::parse("0 0 0 30 2 *");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(next(*c, "2026-11-30T00:00:00Z"), "never");
}

TEST(CronParse, ErrorsSayWhatIsWrong) {
  for (auto [spec, want] : std::vector<std::pair<const char*, const char*>>{
           {"* * *", "want 6 fields"},
           {"60 * * * * *", "seconds: 60 is outside 0-59"},
           {"* * 25 * * *", "hours: 25"},
           {"* * * * FOO *", "month: \"FOO\" is not a number"},
           {"*/0 * * * * *", "bad step"},
           {"5-1 * * * * *", "backwards"}}) {
    auto c = CronSchedule::parse(spec);
    ASSERT_FALSE(c.ok()) << spec;
    EXPECT_NE(c.error().find(want), std::string::npos) << c.error();
  }
}

TEST(LineSplitterTest, SplitsStripsCrAndBoundsLines) {
  LineSplitter s(8);
  std::vector<std::string> lines;
  auto emit = [&](std::string l) { lines.push_back(std::move(l)); };
  s.feed("a\r\nb", emit);
  s.feed("c\nlonglonglong", emit);
  s.finish(emit);
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "bc", "longlong", "long"}));
}

}  // namespace
}  // namespace wsa::agent
