#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "wsa/common/metrics.h"

namespace wsa::metrics {
namespace {

using prometheus::MetricType;

TEST(MetricsHistogram, CountsEachObservationInTheFirstBucketWhoseBoundHoldsIt) {
  Histogram h({1, 5, 10});
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{0, 0, 0, 0}));
  h.observe(0.5);
  h.observe(1);  // bounds are inclusive
  h.observe(3);
  h.observe(10);
  h.observe(11);  // above every bound: the +Inf bucket
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{2, 1, 1, 1}));
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 25.5);
  EXPECT_EQ(h.bounds(), (std::vector<double>{1, 5, 10}));
}

TEST(MetricsHistogram, RefusesBoundsOutOfOrder) {
  EXPECT_THROW(Histogram({5, 1}), std::invalid_argument);
}

TEST(MetricsFamilies, CountersAndGaugesKeepTheirTypeHelpLabelsAndValue) {
  Families b;
  b.counter("a_total", "Things counted", uint64_t{7});
  b.gauge("b", "A level", -2.5, {{"z", "1"}, {"a", "2"}});
  auto f = b.take();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].name, "a_total");
  EXPECT_EQ(f[0].help, "Things counted");
  EXPECT_EQ(f[0].type, MetricType::Counter);
  ASSERT_EQ(f[0].metric.size(), 1u);
  EXPECT_TRUE(f[0].metric[0].label.empty());
  EXPECT_EQ(f[0].metric[0].counter.value, 7.0);
  EXPECT_EQ(f[1].type, MetricType::Gauge);
  ASSERT_EQ(f[1].metric.size(), 1u);
  EXPECT_EQ(f[1].metric[0].gauge.value, -2.5);
  // Labels stay in the order given.
  ASSERT_EQ(f[1].metric[0].label.size(), 2u);
  EXPECT_EQ(f[1].metric[0].label[0].name, "z");
  EXPECT_EQ(f[1].metric[0].label[1].name, "a");
  EXPECT_EQ(f[1].metric[0].label[1].value, "2");
}

TEST(MetricsFamilies, NamingAFamilyAgainAddsToIt) {
  Families b;
  b.counter("x_total", "X by kind", 1, {{"kind", "a"}});
  b.gauge("y", "Y", 3);
  b.counter("x_total", "X by kind", 2, {{"kind", "b"}});
  auto f = b.take();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].name, "x_total");
  ASSERT_EQ(f[0].metric.size(), 2u);
  EXPECT_EQ(f[0].metric[0].label[0].value, "a");
  EXPECT_EQ(f[0].metric[1].label[0].value, "b");
  EXPECT_EQ(f[0].metric[1].counter.value, 2.0);
  EXPECT_EQ(f[1].name, "y");
}

TEST(MetricsFamilies, LabelledFamilyGetsItsSeriesAndIsLeftOutWithoutAny) {
  Families b;
  auto errors = b.counters("errors_total", "Errors by reason");
  auto none = b.counters("nothing_total", "Nothing yet");
  b.gauge("up", "1 while up", 1);
  errors.add(4, {{"reason", "late"}}).add(5, {{"reason", "lost"}});
  EXPECT_EQ(b.text(),
            "# HELP errors_total Errors by reason\n"
            "# TYPE errors_total counter\n"
            "errors_total{reason=\"late\"} 4\n"
            "errors_total{reason=\"lost\"} 5\n"
            "# HELP up 1 while up\n"
            "# TYPE up gauge\n"
            "up 1\n");
  none.add(0);  // a family's handle stays valid while the builder grows
  auto f = b.take();
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[1].name, "nothing_total");
  EXPECT_EQ(f[1].metric.at(0).counter.value, 0.0);

  Families empty;
  empty.counters("errors_total", "Errors by reason");
  EXPECT_TRUE(empty.take().empty());
  EXPECT_EQ(empty.text(), "");
}

TEST(MetricsFamilies, OneNameWithTwoTypesIsAProgrammingError) {
  Families b;
  b.counter("x", "X", 1);
  EXPECT_THROW(b.gauge("x", "X", 1), std::logic_error);
  auto h = b.histograms("h", "H");
  EXPECT_THROW(h.add(1), std::logic_error);
  EXPECT_THROW(b.counters("x", "X").add(Histogram({1})), std::logic_error);
}

TEST(MetricsFamilies, HistogramExportsCumulativeBucketsCountAndSum) {
  Histogram h({0.5, 2});
  h.observe(0.1);
  h.observe(1);
  h.observe(1.5);
  h.observe(9);
  Families b;
  b.histogram("d_seconds", "Durations", h, {{"stage", "start"}});
  auto f = b.take();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, MetricType::Histogram);
  const auto& m = f[0].metric.at(0).histogram;
  EXPECT_EQ(m.sample_count, 4u);
  EXPECT_DOUBLE_EQ(m.sample_sum, 11.6);
  ASSERT_EQ(m.bucket.size(), 3u);
  EXPECT_EQ(m.bucket[0].upper_bound, 0.5);
  EXPECT_EQ(m.bucket[0].cumulative_count, 1u);
  EXPECT_EQ(m.bucket[1].upper_bound, 2.0);
  EXPECT_EQ(m.bucket[1].cumulative_count, 3u);
  EXPECT_TRUE(std::isinf(m.bucket[2].upper_bound));
  EXPECT_EQ(m.bucket[2].cumulative_count, 4u);
}

TEST(MetricsFamilies, TextIsThePrometheusExposition) {
  Histogram h({1});
  h.observe(0.5);
  h.observe(3);
  Families b;
  b.counter("c_total", "C", 3, {{"code", "0"}, {"method", "Get"}});
  b.gauge("g", "G", 1.5);
  b.histogram("h_seconds", "H", h);
  EXPECT_EQ(b.text(),
            "# HELP c_total C\n"
            "# TYPE c_total counter\n"
            "c_total{code=\"0\",method=\"Get\"} 3\n"
            "# HELP g G\n"
            "# TYPE g gauge\n"
            "g 1.5\n"
            "# HELP h_seconds H\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_count 2\n"
            "h_seconds_sum 3.5\n"
            "h_seconds_bucket{le=\"1\"} 1\n"
            "h_seconds_bucket{le=\"+Inf\"} 2\n");
}

TEST(MetricsCollectors, AScrapeIsTheUnionOfTheCollectorsReadAtThatTime) {
  uint64_t a = 1;
  double level = 0;
  Collectors cs;
  cs.add([&a](Families& b) { b.counter("a_total", "A", a); });
  cs.add([&level](Families& b) {
    b.gauge("level", "L", level);
    b.counter("a_total", "A", 10, {{"from", "second"}});
  });
  a = 5;
  level = 2;
  auto f = cs.collect().take();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].name, "a_total");
  ASSERT_EQ(f[0].metric.size(), 2u);
  EXPECT_EQ(f[0].metric[0].counter.value, 5.0);
  EXPECT_EQ(f[0].metric[1].counter.value, 10.0);
  EXPECT_EQ(f[1].metric[0].gauge.value, 2.0);
  a = 6;
  EXPECT_NE(cs.text().find("a_total 6\n"), std::string::npos);
  EXPECT_EQ(Collectors().text(), "");
}

}  // namespace
}  // namespace wsa::metrics
