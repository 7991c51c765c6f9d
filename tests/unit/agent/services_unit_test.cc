// Unit tests for the pieces behind the agent's PTY, speed test and HTTP API services: the
// terminal environment, speed test protocol and server bounds, the /proc listener scan, and
// the worker thread's bounded queue.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "agent/listening_ports.h"
#include "wsa/common/worker.h"
#include "wsa/net/asio_stream.h"
#include "wsa/rpty/rpty.h"
#include "wsa/speedtest/speedtest.h"

namespace wsa {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// --- Terminal environment ----------------------------------------------------------------------

struct EnvCase {
  std::map<std::string, std::string> in;
  std::map<std::string, std::string> want;  // "" value: must be absent
};

TEST(TerminalEnvTest, TermAndUtf8Locale) {
  std::vector<EnvCase> cases = {
      {{}, {{"TERM", "xterm-256color"}, {"LC_CTYPE", "C.UTF-8"}}},
      {{{"TERM", "dumb"}}, {{"TERM", "xterm-256color"}}},
      {{{"LANG", "C"}}, {{"LANG", "C"}, {"LC_CTYPE", "C.UTF-8"}}},
      {{{"LANG", "en_US.UTF-8"}}, {{"LC_CTYPE", ""}}},
      {{{"LANG", "en_US.utf8"}}, {{"LC_CTYPE", ""}}},
      {{{"LANG", "C"}, {"LC_CTYPE", "en_US.UTF-8"}}, {{"LC_CTYPE", "en_US.UTF-8"}}},
      {{{"LANG", "en_US.UTF-8"}, {"LC_CTYPE", "C"}}, {{"LC_CTYPE", "C.UTF-8"}}},
      // LC_ALL wins over everything and is never overridden.
      {{{"LC_ALL", "C"}}, {{"LC_ALL", "C"}, {"LC_CTYPE", ""}}},
      {{{"LC_ALL", "de_DE.UTF-8"}, {"LANG", "C"}}, {{"LC_CTYPE", ""}}},
      // An empty value counts as unset.
      {{{"LC_ALL", ""}, {"LANG", "POSIX"}}, {{"LC_CTYPE", "C.UTF-8"}}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto env = cases[i].in;
    rpty::withTerminalEnv(&env);
    for (const auto& [k, v] : cases[i].want) {
      if (v.empty()) {
        EXPECT_EQ(env.count(k), 0u) << "case " << i << ": " << k << "=" << env[k];
      } else {
        EXPECT_EQ(env[k], v) << "case " << i << ": " << k;
      }
    }
  }
}

// --- Speed test protocol ----------------------------------------------------------------------

TEST(SpeedtestProtocolTest, ConfigValidation) {
  speedtest::Limits l;
  auto ok = speedtest::parseConfig(R"({"version":1,"direction":"upload","duration_ms":2500})", l);
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->direction, speedtest::Direction::kUpload);
  EXPECT_EQ(ok->duration, milliseconds(2500));
  auto roundtrip = speedtest::encodeConfig(*ok);
  ASSERT_EQ(roundtrip.back(), '\n');
  auto again = speedtest::parseConfig(roundtrip.substr(0, roundtrip.size() - 1), l);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->duration, ok->duration);
  for (const auto& [bad, msg] : std::vector<std::pair<std::string, std::string>>{
           {"", "not a JSON object"},
           {"[]", "not a JSON object"},
           {R"({"direction":"upload","duration_ms":1000})", "version"},
           {R"({"version":"1","direction":"upload","duration_ms":1000})", "version"},
           {R"({"version":3,"direction":"upload","duration_ms":1000})", "unsupported version 3"},
           {R"({"version":1,"direction":1,"duration_ms":1000})", "direction"},
           {R"({"version":1,"direction":"up","duration_ms":1000})", "\"up\""},
           {R"({"version":1,"direction":"upload","duration_ms":999})", "outside"},
           {R"({"version":1,"direction":"upload","duration_ms":30001})", "outside"},
           {R"({"version":1,"direction":"upload","duration_ms":1.5})", "duration_ms"},
       }) {
    auto r = speedtest::parseConfig(bad, l);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().find(msg), std::string::npos) << bad << " → " << r.error();
  }
}

TEST(SpeedtestProtocolTest, MeterSortsBytesIntoIntervals) {
  MonoTime t0{};
  speedtest::Meter m(t0);
  m.add(t0 + milliseconds(10), 100);
  m.add(t0 + milliseconds(999), 100);
  m.add(t0 + milliseconds(1000), 50);
  m.add(t0 + milliseconds(2500), 25);
  m.add(t0 + milliseconds(3010), 5);  // a sliver past the last full second: folded back
  auto r = m.finish(t0 + milliseconds(3020), speedtest::Direction::kDownload);
  ASSERT_EQ(r.intervals.size(), 3u);
  EXPECT_EQ(r.intervals[0].bytes, 200u);
  EXPECT_EQ(r.intervals[1].bytes, 50u);
  EXPECT_EQ(r.intervals[2].bytes, 30u);
  EXPECT_DOUBLE_EQ(r.intervals[0].bitsPerSecond(), 1600.0);
  EXPECT_EQ(r.total.bytes, 280u);
  EXPECT_NEAR(r.total.end_s, 3.02, 1e-9);
  auto parsed = speedtest::resultsFromJson(speedtest::resultsToJson(r));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->intervals.size(), 3u);
  EXPECT_EQ(parsed->total.bytes, 280u);
  EXPECT_FALSE(speedtest::resultsFromJson("{\"direction\":\"upload\"}"));
  // Time going backwards or absurdly far forwards stays bounded.
  speedtest::Meter wild(t0 + seconds(10));
  wild.add(t0, 1);
  wild.add(t0 + std::chrono::hours(100), 1);
  EXPECT_LE(wild.finish(t0 + seconds(11), speedtest::Direction::kUpload).intervals.size(), 3600u);
}

// The speed test server in-process, on a real loopback socket, with the blocking client.
class SpeedtestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = makeLoopClock(io_);
    speedtest::ServerOptions o;
    o.max_concurrent = 1;
    speedtest::ServerHooks h;
    h.done = [this](speedtest::Direction, bool ok, uint64_t) { (ok ? ok_ : failed_)++; };
    server_ = std::make_unique<speedtest::Server>(io_, *clock_, o, h);
    auto bound = server_->listen("127.0.0.1:0");
    ASSERT_TRUE(bound) << bound.error();
    port_ = std::stoi(bound->substr(bound->rfind(':') + 1));
    thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
  }
  void TearDown() override {
    asio::post(io_, [this] { server_->shutdown(); });
    io_.stop();
    thread_.join();
  }
  int dial() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port_));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    return fd;
  }

  asio::io_context io_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<speedtest::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> ok_{0}, failed_{0};
};

TEST_F(SpeedtestServerTest, BothDirectionsAndTheConcurrencyBound) {
  speedtest::Config cfg;
  cfg.duration = milliseconds(1000);
  cfg.direction = speedtest::Direction::kUpload;
  // A test in progress holds the only slot: a second one is refused with a message.
  auto first = std::async(std::launch::async, [&] {
    int fd = dial();
    auto r = speedtest::runClient(fd, cfg);
    ::close(fd);
    return r;
  });
  // Wait (bounded) until the server counts the first test as running.
  auto deadline = std::chrono::steady_clock::now() + seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    std::promise<size_t> active;
    asio::post(io_, [&] { active.set_value(server_->active()); });
    if (active.get_future().get() == 1) break;
    std::this_thread::yield();
  }
  int fd = dial();
  auto refused = speedtest::runClient(fd, cfg);
  ::close(fd);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("too many speed tests running"), std::string::npos)
      << refused.error();
  auto up = first.get();
  ASSERT_TRUE(up) << up.error();
  EXPECT_GT(up->total.bytes, 0u);
  EXPECT_EQ(up->direction, speedtest::Direction::kUpload);
  // The slot is free again.
  cfg.direction = speedtest::Direction::kDownload;
  fd = dial();
  auto down = speedtest::runClient(fd, cfg);
  ::close(fd);
  ASSERT_TRUE(down) << down.error();
  EXPECT_GT(down->total.bytes, 0u);
  EXPECT_TRUE([&] {
    auto until = std::chrono::steady_clock::now() + seconds(5);
    while (ok_.load() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    return ok_.load() == 2;
  }());
}

TEST_F(SpeedtestServerTest, BadFramesEndTheTestAsFailed) {
  int fd = dial();
  std::string cfg = R"({"version":1,"direction":"upload","duration_ms":1000})"
                    "\n";
  ASSERT_EQ(::send(fd, cfg.data(), cfg.size(), MSG_NOSIGNAL), static_cast<ssize_t>(cfg.size()));
  // A frame of an unknown type after the ack.
  std::string frame = speedtest::frameHeader('Z', 3) + "abc";
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
  std::string got;
  char buf[256];
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(got, "{\"ok\":true,\"version\":1}\n");  // then closed
  auto until = std::chrono::steady_clock::now() + seconds(5);
  while (failed_.load() < 1 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  EXPECT_EQ(failed_.load(), 1);
}

// --- Listening ports --------------------------------------------------------------------------

constexpr char kTcp[] =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n"
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "111 1 0 100 0 0 10 0\n"
    "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "222 1 0 100 0 0 10 0\n"
    "   2: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 "
    "333 1 0 100 0 0 10 0\n"
    "   3: 0100007F:0004 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "444 1 0 100 0 0 10 0\n"
    "   4: garbage line\n"
    "   5: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "555 1 0 100 0 0 10 0\n";
constexpr char kTcp6[] =
    "  sl  local_address                         remote_address                        st tx_queue "
    "rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 666 1 0 100 0 0 10 0\n"
    "   1: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 777 1 0 100 0 0 10 0\n";

TEST(ListeningPortsTest, ParsesListenEntriesOnly) {
  auto v4 = agent::parseProcNetTcp(kTcp);
  ASSERT_EQ(v4.size(), 3u);
  EXPECT_EQ(v4[0].port, 8080);
  EXPECT_EQ(v4[0].inode, 111u);
  EXPECT_EQ(v4[1].port, 22);
  EXPECT_EQ(v4[2].port, 4);
  auto v6 = agent::parseProcNetTcp(kTcp6);
  ASSERT_EQ(v6.size(), 2u);
  EXPECT_EQ(v6[1].port, 9000);
  EXPECT_TRUE(agent::parseProcNetTcp("").empty());
  EXPECT_TRUE(agent::parseProcNetTcp("header only\n").empty());
}

TEST(ListeningPortsTest, ScanFindsOwnersFiltersAndDeduplicates) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("wsa-proc-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "net");
  std::ofstream(root / "net/tcp") << kTcp;
  std::ofstream(root / "net/tcp6") << kTcp6;
  auto proc = [&](const std::string& pid, const std::string& comm, std::vector<std::string> links) {
    fs::create_directories(root / pid / "fd");
    std::ofstream(root / pid / "comm") << comm << "\n";
    int i = 3;
    for (const auto& l : links) fs::create_symlink(l, root / pid / "fd" / std::to_string(i++));
  };
  proc("100", "node", {"/dev/null", "socket:[111]", "pipe:[5]"});
  proc("200", "sshd", {"socket:[222]"});
  proc("300", "python3", {"socket:[777]"});
  fs::create_directories(root / "self");  // not a pid: ignored
  auto r = agent::scanListeningPorts(root.string(), 9, {9000});
  ASSERT_TRUE(r) << r.error();
  // 8080 on IPv4 and IPv6 once, 22 kept, 4 (< 9) hidden, 9000 hidden by request.
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].port, 22);
  EXPECT_EQ((*r)[0].process_name, "sshd");
  EXPECT_EQ((*r)[1].port, 8080);
  EXPECT_EQ((*r)[1].process_name, "node");
  EXPECT_EQ((*r)[1].network, "tcp");
  // Owners not visible: the port is still listed, without a name.
  fs::remove_all(root / "100");
  r = agent::scanListeningPorts(root.string(), 9, {});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[1].port, 8080);
  EXPECT_EQ((*r)[1].process_name, "");
  EXPECT_EQ((*r)[2].process_name, "python3");
  // No tables at all: an error.
  EXPECT_FALSE(agent::scanListeningPorts((root / "missing").string(), 9, {}));
  fs::remove_all(root);
}

// --- Worker -----------------------------------------------------------------------------------

TEST(WorkerTest, RunsJobsInOrderAndRefusesBeyondItsBound) {
  Worker w("test-worker", 2);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<int> ran;
  std::promise<void> started;
  ASSERT_TRUE(w.post([&] {
    started.set_value();
    std::unique_lock l(mu);
    cv.wait(l, [&] { return release; });
    ran.push_back(0);
  }));
  started.get_future().wait();  // the first job is running, not queued
  EXPECT_TRUE(w.post([&] { ran.push_back(1); }));
  EXPECT_TRUE(w.post([&] { ran.push_back(2); }));
  EXPECT_EQ(w.depth(), 2u);
  EXPECT_FALSE(w.post([&] { ran.push_back(3); }));  // the bound: refused, not queued
  EXPECT_EQ(w.refused(), 1u);
  std::promise<void> last;
  {
    std::lock_guard l(mu);
    release = true;
  }
  cv.notify_all();
  // Once there is room again, jobs are accepted.
  auto until = std::chrono::steady_clock::now() + seconds(5);
  while (!w.post([&] { last.set_value(); }) && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  ASSERT_EQ(last.get_future().wait_for(seconds(5)), std::future_status::ready);
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2}));
}

}  // namespace
}  // namespace wsa
