#pragma once
// Workspace metadata: each description's script runs on its own interval (0: once per agent
// lifetime) with its own timeout (timeout, else interval, else three report ticks, else 5 s),
// never two runs of one key at once. Output (stdout and stderr together) is capped at 10 KiB;
// truncation, non-zero exits and timeouts are explained in the result's error. Results are
// batched to the server once per tick, one batch in flight; the newest result per key wins.

#include <spdlog/logger.h>

#include <map>
#include <memory>
#include <string>

#include "agent/api.h"
#include "agent/metrics.h"
#include "agent/supervisor.h"
#include "wsa/common/clock.h"
#include "wsa/exec/process.h"

namespace wsa::agent {

struct MetadataOptions {
  Duration tick = std::chrono::seconds(1);
  size_t max_output = 10 * 1024;
};

using MetadataCommandFactory = std::function<exec::Command(const std::string& script)>;

class MetadataCollector {
 public:
  MetadataCollector(asio::io_context& io, Clock& clock, AgentMetrics& metrics,
                    MetadataOptions options, MetadataCommandFactory factory);
  ~MetadataCollector();
  // New manifest descriptions (keys that vanished are forgotten).
  void setDescriptions(const std::vector<v1::MetadataDescription>& descriptions);
  // The routine collecting on schedule and reporting over `api` (kStop).
  std::shared_ptr<Routine> makeRoutine(AgentApi& api);
  size_t inFlight() const { return in_flight_.size(); }
  // The newest result per key (debug endpoint).
  std::map<std::string, v1::MetadataResult> latest() const { return latest_; }
  Duration timeoutFor(const v1::MetadataDescription& d) const;

  class Reporter;
  class Collection;

 private:
  void collectDue();
  void collect(const v1::MetadataDescription& d);

  asio::io_context& io_;
  Clock& clock_;
  AgentMetrics& metrics_;
  MetadataOptions options_;
  MetadataCommandFactory factory_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<v1::MetadataDescription> descriptions_;
  std::map<std::string, MonoTime> last_collected_;
  std::map<std::string, std::shared_ptr<Collection>> in_flight_;
  std::map<std::string, v1::MetadataResult> latest_;
  std::map<std::string, v1::MetadataResult> unreported_;
};

}  // namespace wsa::agent
