#include "agent/metrics.h"

#include <gtest/gtest.h>

#include "wsa/agent/v1/stats.pb.h"

namespace wsa::agent {
namespace {

TEST(AgentMetrics, AScrapeIsTheCountsThenEveryCollector) {
  AgentMetrics m;
  ++m.connect_attempts;
  m.connected = true;
  ++m.scripts_executed[{"start", "true"}];
  m.observeScriptSeconds("start", 0.3);
  m.observeScriptSeconds("start", 7);
  ++m.api_requests[{"/api/v0/listening-ports", "200"}];
  uint64_t depth = 0;
  m.addCollector(
      [&depth](metrics::Families& out) { out.gauge("wsa_agent_worker_queue_depth", "D", depth); });
  depth = 3;

  std::string text = m.serialize();
  for (const char* want : {
           "# TYPE wsa_agent_connect_attempts_total counter\nwsa_agent_connect_attempts_total 1\n",
           "wsa_agent_connected 1\n",
           "wsa_agent_scripts_executed_total{stage=\"start\",success=\"true\"} 1\n",
           "# TYPE wsa_agent_script_duration_seconds histogram\n",
           "wsa_agent_script_duration_seconds_count{stage=\"start\"} 2\n",
           "wsa_agent_script_duration_seconds_bucket{stage=\"start\",le=\"0.5\"} 1\n",
           "wsa_agent_script_duration_seconds_bucket{stage=\"start\",le=\"10\"} 2\n",
           "wsa_agent_api_requests_total{code=\"200\",route=\"/api/v0/listening-ports\"} 1\n",
           "wsa_agent_worker_queue_depth 3\n",
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  // Families nobody counted in yet are left out.
  EXPECT_EQ(text.find("wsa_agent_routine_errors_total"), std::string::npos) << text;

  // Stats carry the counters and gauges, and a histogram as its count.
  v1::Stats st;
  m.toStats(&st);
  bool histogram = false, gauge = false;
  for (const auto& x : st.metrics()) {
    if (x.name() == "wsa_agent_script_duration_seconds_count") {
      histogram = true;
      EXPECT_EQ(x.type(), v1::Metric::TYPE_COUNTER);
      EXPECT_EQ(x.value(), 2);
      ASSERT_EQ(x.labels_size(), 1);
      EXPECT_EQ(x.labels(0).name(), "stage");
      EXPECT_EQ(x.labels(0).value(), "start");
    }
    if (x.name() == "wsa_agent_worker_queue_depth") {
      gauge = true;
      EXPECT_EQ(x.type(), v1::Metric::TYPE_GAUGE);
      EXPECT_EQ(x.value(), 3);
    }
  }
  EXPECT_TRUE(histogram);
  EXPECT_TRUE(gauge);
}

}  // namespace
}  // namespace wsa::agent
