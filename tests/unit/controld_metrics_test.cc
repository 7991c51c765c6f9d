#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "controld/hub.h"
#include "controld/metrics.h"
#include "wsa/common/metrics.h"

namespace wsa::controld {
namespace {

std::string scrape(const Metrics& m) {
  metrics::Families f;
  m.collect(f);
  return f.text();
}

TEST(ControldMetrics, CountsFromManyThreadsAreReadAtScrapeTime) {
  Metrics m;
  std::string before = scrape(m);
  EXPECT_NE(before.find("\nwsa_controld_auth_failures_total 0\n"), std::string::npos) << before;
  // Labelled families appear with their first series.
  EXPECT_EQ(before.find("wsa_controld_rpcs_total"), std::string::npos) << before;
  EXPECT_EQ(before.find("wsa_controld_stream_queue_full_total"), std::string::npos) << before;

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 1000; ++i) {
        m.rpc("UpdateStats", 0);
        m.authFailure();
        m.logsStored(2, 10);
      }
    });
  }
  for (auto& t : threads) t.join();
  m.rpc("GetManifest", 16);
  m.logBatchOverBudget();
  m.logDuplicates(3);
  m.streamQueueFull("relay");
  m.streamQueueFull("relay");

  std::string s = scrape(m);
  for (const char* want : {
           "# HELP wsa_controld_rpcs_total gRPC calls handled, by method and status code\n"
           "# TYPE wsa_controld_rpcs_total counter\n",
           "wsa_controld_rpcs_total{code=\"0\",method=\"UpdateStats\"} 4000\n",
           "wsa_controld_rpcs_total{code=\"16\",method=\"GetManifest\"} 1\n",
           "wsa_controld_auth_failures_total 4000\n",
           "wsa_controld_log_lines_stored_total 8000\n",
           "wsa_controld_log_bytes_stored_total 40000\n",
           "wsa_controld_log_batches_over_budget_total 1\n",
           "wsa_controld_log_lines_duplicate_total 3\n",
           "# TYPE wsa_controld_stream_queue_full_total counter\n"
           "wsa_controld_stream_queue_full_total{stream=\"relay\"} 2\n",
       }) {
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  }
}

class NullEvents : public EventSink {
 public:
  bool pushEvent(const agent::v1::ServerEvent&) override { return true; }
  void closeStream(const std::string&) override {}
};

TEST(ControldMetrics, HubCollectorReadsRelayOutcomesAndConnectedAgents) {
  const std::string id = "11111111-1111-4111-8111-111111111111";
  Hub hub({{id, "dev", {"100.64.0.1/32"}, {}}}, {});
  auto scrapeHub = [&hub] {
    metrics::Families f;
    hub.collectMetrics(f);
    return f.text();
  };
  std::string s = scrapeHub();
  for (const char* want : {"# TYPE wsa_controld_relay_packets_total counter\n",
                           "wsa_controld_relay_packets_total{result=\"forwarded\"} 0\n",
                           "wsa_controld_relay_packets_total{result=\"no_route\"} 0\n",
                           "wsa_controld_relay_packets_total{result=\"denied\"} 0\n",
                           "wsa_controld_relay_packets_total{result=\"queue_full\"} 0\n",
                           "# TYPE wsa_controld_connected_agents gauge\n"
                           "wsa_controld_connected_agents 0\n"}) {
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  }

  // An unbound stream's packets are denied; an agent with two event streams counts once.
  hub.relay(nullptr, std::string(32, 'A'), "p");
  auto a = std::make_shared<NullEvents>();
  auto b = std::make_shared<NullEvents>();
  ASSERT_TRUE(hub.addEventStream(id, a.get()));
  ASSERT_TRUE(hub.addEventStream(id, b.get()));
  s = scrapeHub();
  EXPECT_NE(s.find("wsa_controld_relay_packets_total{result=\"denied\"} 1\n"), std::string::npos)
      << s;
  EXPECT_NE(s.find("wsa_controld_connected_agents 1\n"), std::string::npos) << s;
  hub.removeEventStream(id, a.get());
  EXPECT_NE(scrapeHub().find("wsa_controld_connected_agents 1\n"), std::string::npos);
  hub.removeEventStream(id, b.get());
  EXPECT_NE(scrapeHub().find("wsa_controld_connected_agents 0\n"), std::string::npos);
}

}  // namespace
}  // namespace wsa::controld
