#pragma once
// Speed test (the agent's port 3; `--speedtest-listen` until the overlay exists).
//
// Wire protocol, per connection (docs/protocol.md, "Speed test"):
//   client → agent: one JSON line (≤ 4 KiB, '\n'-terminated):
//       {"version":1,"direction":"download"|"upload","duration_ms":5000}
//     direction is the client's view: download = the agent sends.
//   agent → client: {"ok":true,"version":1}\n  — or {"error":"..."}\n and the connection closes.
//   Then frames: 1 type byte, a 4-byte big-endian payload length, the payload:
//       'D' data (≤ 1 MiB of arbitrary bytes), 'E' end of data (empty),
//       'R' results (JSON, see resultsToJson), sent by the agent after an upload.
//   download: the agent sends D frames for the duration, then E, then closes.
//   upload:   the client sends D frames for the duration, then E; the agent measured what
//             arrived and answers with R, then closes.
// The receiving side measures: bytes per 1-second interval from the moment the data phase began.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "wsa/common/clock.h"
#include "wsa/common/result.h"
#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::speedtest {

constexpr int kVersion = 1;
constexpr size_t kMaxConfigLine = 4096;
constexpr size_t kMaxFramePayload = 1u << 20;
constexpr size_t kBlockSize = 64u << 10;
constexpr size_t kFrameHeader = 5;

enum class Direction { kDownload, kUpload };
const char* directionName(Direction d);

struct Config {
  int version = kVersion;
  Direction direction = Direction::kDownload;
  std::chrono::milliseconds duration{5000};
};

struct Limits {
  std::chrono::milliseconds min_duration{1000};
  std::chrono::milliseconds max_duration{30000};
};

// Parses and validates a config line (without the '\n'); errors are for the client to read.
Result<Config> parseConfig(std::string_view line, const Limits& limits);
std::string encodeConfig(const Config& c);  // with the trailing '\n'

struct Interval {
  double start_s = 0;  // from the start of the data phase
  double end_s = 0;
  uint64_t bytes = 0;
  double bitsPerSecond() const;
};

struct Results {
  Direction direction = Direction::kDownload;
  std::vector<Interval> intervals;
  Interval total;
};

std::string resultsToJson(const Results& r);
Result<Results> resultsFromJson(std::string_view text);
// "  0.0-1.0 s   118.2 MiB   991.6 Mbit/s" lines and a total line, for people.
std::string formatResults(const Results& r);

// Sorts received bytes into intervals.
class Meter {
 public:
  Meter(MonoTime start, Duration interval = std::chrono::seconds(1));
  void add(MonoTime now, uint64_t bytes);
  Results finish(MonoTime end, Direction direction) const;

 private:
  MonoTime start_;
  Duration interval_;
  std::vector<uint64_t> buckets_;
};

// Frames.
std::string frameHeader(char type, uint32_t length);

struct ServerOptions {
  Limits limits;
  Duration config_timeout = std::chrono::seconds(10);
  Duration grace = std::chrono::seconds(5);  // beyond the duration before a test is abandoned
  size_t max_concurrent = 4;
  size_t max_connections = 64;  // connections still sending their config count too
};

struct ServerHooks {
  // A test finished (ok) or failed; bytes moved in its data phase.
  std::function<void(Direction, bool ok, uint64_t bytes)> done;
};

class Server {
 public:
  Server(asio::io_context& io, Clock& clock, ServerOptions options, ServerHooks hooks);
  ~Server();
  Result<std::string> listen(const std::string& address);
  void serve(net::ByteStreamPtr stream);
  void stopAccepting();
  void shutdown();
  size_t active() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Runs a test over a connected socket (blocking; for the CLI and test tools). `timeout` bounds
// each wait beyond the test's own duration.
Result<Results> runClient(int fd, const Config& config,
                          std::chrono::milliseconds grace = std::chrono::seconds(5));

}  // namespace wsa::speedtest
