// The agent's reconnecting PTY, speed test and HTTP API, driven against the real agent binary
// (with the real controld) over loopback: the PTY through its wire protocol, the speed test
// through the wsa-speedtest tool, the API with libcurl.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

#include "support/agent_harness.h"
#include "support/controld_harness.h"
#include "support/http_client.h"
#include "support/rpty_client.h"
#include "wsa/term/screen.h"

namespace wsa::test {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

int portOf(const std::string& hostport) {
  return std::stoi(hostport.substr(hostport.rfind(':') + 1));
}

bool processAlive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::string screenDump(term::ScreenModel& m) {
  int r = 0, c = 0;
  m.cursor(&r, &c);
  return m.text() + "\n[cursor " + std::to_string(r) + "," + std::to_string(c) +
         (m.altScreen() ? ", alternate screen]" : "]");
}

class ServicesTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> agent_args = {}, std::vector<std::string> env = {},
             bool default_listeners = true) {
    json c = basicControldConfig();
    c["stats_report_interval_seconds"] = 1;
    cd_ = std::make_unique<ControldHarness>(c);
    cd_->start();
    AgentHarness::Options o;
    o.services = default_listeners;
    o.extra_args = std::move(agent_args);
    o.env = std::move(env);
    agent_ = std::make_unique<AgentHarness>(cd_->controlUrl(), cd_->agentToken(), o);
    agent_->start();
    if (default_listeners) {
      pty_port_ = portOf(agent_->ready()["pty"]);
      api_ = "http://" + agent_->ready()["api"].get<std::string>();
    }
    speedtest_ = agent_->ready()["speedtest"];
    // Sessions see the manifest once the agent has it.
    ASSERT_TRUE(waitUntil([&] { return !cd_->agentView()["startup"].is_null(); }, seconds(20)));
  }

  std::unique_ptr<RptyClient> attach(const std::string& id, const std::string& command = "",
                                     int rows = 24, int cols = 80) {
    auto c = std::make_unique<RptyClient>(pty_port_, rows, cols);
    EXPECT_TRUE(c->connected());
    c->init(id, command);
    return c;
  }

  // Runs a command in the shell session and waits for its marker line in the output.
  static bool shellRun(RptyClient& c, const std::string& command, const std::string& expect) {
    c.input(command + "\r");
    return c.waitForText(expect, scaled(seconds(10)));
  }

  // The shell's pid, printed by the shell itself (the echoed command line does not match).
  static pid_t shellPid(RptyClient& c) {
    c.input("echo pid=$$=\r");
    std::smatch m;
    std::regex re("pid=([0-9]+)=");
    std::string out;
    if (!c.waitFor([&](const std::string& o) { return std::regex_search(o, m, re); },
                   scaled(seconds(10)))) {
      return -1;
    }
    out = c.output();
    std::regex_search(out, m, re);
    return std::stoi(m[1]);
  }

  double metric(const std::string& series) { return metricValue(agent_->metrics(), series); }

  std::unique_ptr<ControldHarness> cd_;
  std::unique_ptr<AgentHarness> agent_;
  int pty_port_ = 0;
  std::string api_;
  std::string speedtest_;
};

// --- Reconnecting PTY -------------------------------------------------------------------------

TEST_F(ServicesTest, TwoClientsSeeTheSameOutput) {
  start();
  auto a = attach("shared");
  auto b = attach("shared");
  ASSERT_TRUE(shellRun(*a, "echo marker-$((6*7))", "marker-42"));
  EXPECT_TRUE(b->waitForText("marker-42", scaled(seconds(10)))) << b->output();
  // Input from either client goes to the same shell.
  ASSERT_TRUE(shellRun(*b, "echo from-b-$((2+3))", "from-b-5"));
  EXPECT_TRUE(a->waitForText("from-b-5", scaled(seconds(10))));
}

TEST_F(ServicesTest, ReattachReplaysHistoryThenLiveOutput) {
  start();
  auto a = attach("history");
  ASSERT_TRUE(shellRun(*a, "echo test-$((1+1))-history", "test-2-history"));
  a->close();
  auto b = attach("history");
  EXPECT_TRUE(b->waitForText("test-2-history", scaled(seconds(10)))) << b->output();
  // The redraw shows the same screen; then live output follows.
  EXPECT_NE(b->screen().text().find("test-2-history"), std::string::npos);
  ASSERT_TRUE(shellRun(*b, "echo live-$((3*3))", "live-9"));
}

TEST_F(ServicesTest, ExitEndsTheSessionWithEof) {
  start();
  auto a = attach("exit");
  auto b = attach("exit");
  pid_t shell = shellPid(*a);
  ASSERT_GT(shell, 0);
  a->input("exit\r");
  EXPECT_TRUE(a->waitForEof(scaled(seconds(10))));
  EXPECT_TRUE(b->waitForEof(scaled(seconds(10))));
  EXPECT_TRUE(waitUntil([&] { return !processAlive(shell); }, scaled(seconds(10))));
  // The id is free again: a new connection starts a new shell.
  auto c = attach("exit");
  ASSERT_TRUE(shellRun(*c, "echo again-$((5+5))", "again-10"));
}

TEST_F(ServicesTest, NonShellCommandPrintsAndEnds) {
  start();
  auto a = attach("cmd", "echo test; echo term=$TERM");
  EXPECT_TRUE(a->waitForEof(scaled(seconds(10))));
  EXPECT_NE(a->output().find("test\r\n"), std::string::npos) << a->output();
  EXPECT_NE(a->output().find("term=xterm-256color"), std::string::npos) << a->output();
}

TEST_F(ServicesTest, Utf8SurvivesLangC) {
  start({}, {"LANG=C", "LC_ALL=", "LC_CTYPE="});
  // ${#s} counts characters only in a UTF-8 locale (C would count 9 bytes).
  auto a = attach("utf8", "s='日本語'; echo \"len=${#s} glyphs=$s ❯\"; locale charmap");
  ASSERT_TRUE(a->waitForEof(scaled(seconds(10))));
  EXPECT_NE(a->output().find("len=3 glyphs=日本語 ❯"), std::string::npos) << a->output();
  EXPECT_NE(a->output().find("UTF-8"), std::string::npos) << a->output();
}

// The redraw of a full-screen program: a client that was away sees exactly what a client that
// never left sees (both compared as terminal models), and after the program exits, the shell's
// screen underneath too.
TEST_F(ServicesTest, FullScreenProgramIsRestoredOnReattach) {
  start();
  auto stay = attach("vim");
  ASSERT_TRUE(shellRun(*stay, "echo before-vim-$((4*4))", "before-vim-16"));
  auto away = attach("vim");
  ASSERT_TRUE(away->waitForText("before-vim-16", scaled(seconds(10))));
  away->close();

  TempDir d;
  stay->input("vim -N -u NONE -i NONE -n -c 'set number laststatus=2 ruler' " + d.file("f.txt") +
              "\r");
  ASSERT_TRUE(stay->waitFor([&](const std::string&) { return stay->screen().altScreen(); },
                            scaled(seconds(15))))
      << screenDump(stay->screen());
  // Enough lines to scroll the window, then a cursor position in the middle of the text.
  std::string text = "i";
  for (int i = 1; i <= 40; ++i)
    text += "line " + std::to_string(i) + " with \xc3\xa9t\xc3\xa9 text\r";
  stay->input(text +
              "\x1b"
              "20G:echo 'done-' . (6*7)\r");
  ASSERT_TRUE(stay->waitFor(
      [&](const std::string&) {
        return stay->screen().text().find("done-42") != std::string::npos;
      },
      scaled(seconds(15))))
      << screenDump(stay->screen());

  auto back = attach("vim");
  auto same = [&] {
    int r1, c1, r2, c2;
    stay->screen().cursor(&r1, &c1);
    back->screen().cursor(&r2, &c2);
    return back->screen().text() == stay->screen().text() && r1 == r2 && c1 == c2 &&
           back->screen().altScreen() == stay->screen().altScreen();
  };
  // Both keep reading until the reattached screen equals the never-detached one.
  auto deadline = std::chrono::steady_clock::now() + scaled(seconds(10));
  while (!same() && std::chrono::steady_clock::now() < deadline) {
    stay->pump(milliseconds(10));
    back->pump(milliseconds(10));
  }
  ASSERT_TRUE(same()) << "never detached:\n"
                      << screenDump(stay->screen()) << "\nreattached:\n"
                      << screenDump(back->screen());
  EXPECT_TRUE(back->screen().altScreen());
  EXPECT_NE(back->screen().text().find("line 40 with été text"), std::string::npos);

  // Quit vim: both show the shell's screen again, with the line from before vim.
  back->input("\x1b:q!\r");
  deadline = std::chrono::steady_clock::now() + scaled(seconds(10));
  auto settled = [&] {
    return !stay->screen().altScreen() && !back->screen().altScreen() && same() &&
           back->screen().text().find("before-vim-16") != std::string::npos;
  };
  while (!settled() && std::chrono::steady_clock::now() < deadline) {
    stay->pump(milliseconds(10));
    back->pump(milliseconds(10));
  }
  EXPECT_TRUE(settled()) << "never detached:\n"
                         << screenDump(stay->screen()) << "\nreattached:\n"
                         << screenDump(back->screen());
}

TEST_F(ServicesTest, MalformedInitFramesCloseOnlyThatConnection) {
  start();
  auto good = attach("good");
  ASSERT_TRUE(shellRun(*good, "echo ok-$((1+2))", "ok-3"));

  auto frame = [](const std::string& body) {
    std::string f;
    f += static_cast<char>(body.size() & 0xff);
    f += static_cast<char>((body.size() >> 8) & 0xff);
    return f + body;
  };
  struct Bad {
    const char* what;
    std::string bytes;
    bool half_close;
  };
  std::vector<Bad> bad = {
      {"zero length", std::string("\x00\x00", 2), false},
      {"length beyond the limit", "\xff\xff", false},
      {"truncated body", std::string("\x40\x00", 2) + "{\"id\":\"x\"", true},
      {"truncated length", std::string("\x05", 1), true},
      {"not JSON", frame("this is not json"), false},
      {"JSON array", frame("[1,2,3]"), false},
      {"no id", frame("{\"height\":24,\"width\":80}"), false},
      {"numeric id", frame("{\"id\":5}"), false},
      {"empty id", frame("{\"id\":\"\"}"), false},
      {"id too long", frame("{\"id\":\"" + std::string(200, 'a') + "\"}"), false},
      {"negative height", frame("{\"id\":\"x\",\"height\":-1}"), false},
      {"string width", frame("{\"id\":\"x\",\"width\":\"80\"}"), false},
      {"huge width", frame("{\"id\":\"x\",\"width\":100000}"), false},
      {"numeric command", frame("{\"id\":\"x\",\"command\":5}"), false},
      {"binary", frame(std::string("\x00\x01\x02\xff\xfe", 5)), false},
  };
  for (const auto& b : bad) {
    RptyClient c(pty_port_);
    ASSERT_TRUE(c.connected());
    c.sendRaw(b.bytes);
    if (b.half_close) c.halfClose();
    EXPECT_TRUE(c.waitForEof(scaled(seconds(5)))) << b.what;
    EXPECT_EQ(c.output(), "") << b.what;
  }
  // Bad input after a good init closes that connection; its session stays.
  {
    auto c = attach("good");
    ASSERT_TRUE(c->waitForText("ok-3", scaled(seconds(10))));
    c->sendRaw("not-json");
    EXPECT_TRUE(c->waitForEof(scaled(seconds(5))));
  }
  {
    auto c = attach("good");
    c->sendRaw("{\"data\": 42}");
    EXPECT_TRUE(c->waitForEof(scaled(seconds(5))));
  }
  // The agent kept serving: the good client still works, and a new session starts.
  ASSERT_TRUE(shellRun(*good, "echo still-$((2*5))", "still-10"));
  auto fresh = attach("fresh", "echo fresh-session");
  EXPECT_TRUE(fresh->waitForText("fresh-session", scaled(seconds(10))));
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_errors_total{reason=\"bad_init\"}"),
            static_cast<double>(bad.size()));
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_errors_total{reason=\"bad_input\"}"), 2.0);
  EXPECT_NE(agent_->log().find("init frame is not a JSON object"), std::string::npos);
}

TEST_F(ServicesTest, IdleTimeoutEndsDetachedSessionsOnly) {
  start({"--pty-timeout", "1s"});
  auto a = attach("idle");
  pid_t shell = shellPid(*a);
  ASSERT_GT(shell, 0);
  // Attached for longer than the timeout: the session lives.
  ASSERT_TRUE(shellRun(*a, "sleep 2; echo alive-$((7+1))", "alive-8"));
  a->close();
  // Detached: it ends after the timeout, its shell with it.
  EXPECT_TRUE(waitUntil([&] { return !processAlive(shell); }, scaled(seconds(10))));
  EXPECT_TRUE(waitUntil([&] { return metric("wsa_agent_reconnecting_pty_sessions") == 0; },
                        scaled(seconds(5))));
  EXPECT_NE(agent_->log().find("no client attached for the idle timeout"), std::string::npos);
  // The same id now starts a new shell: nothing of the old screen comes back.
  auto b = attach("idle");
  ASSERT_TRUE(shellRun(*b, "echo new-$((9+9))", "new-18"));
  EXPECT_EQ(b->output().find("alive-8"), std::string::npos);
}

// Output queued for one client is bounded (4 MiB): a client that stops reading is disconnected
// at the bound, while the session and its other clients carry on.
TEST_F(ServicesTest, AClientThatStopsReadingIsDroppedAtTheOutputBound) {
  start();
  auto reader = std::make_unique<RptyClient>(pty_port_, RptyClient::Options{24, 80, 0, false});
  reader->init("flood");
  ASSERT_TRUE(shellRun(*reader, "echo ready-$((2*2))", "ready-4"));
  // Never reads from here on; a small receive buffer keeps the kernel from absorbing much.
  auto stalled = std::make_unique<RptyClient>(pty_port_, RptyClient::Options{24, 80, 4096, false});
  stalled->init("flood");
  // 12 MB of output: more than the agent's 4 MiB queue and the sockets' buffers hold.
  reader->input("head -c 12000000 /dev/zero | tr '\\0' x; echo; echo flood-$((5*5))-done\r");
  EXPECT_TRUE(reader->waitForText("flood-25-done", scaled(seconds(120))));
  EXPECT_TRUE(waitUntil(
      [&] { return metric("wsa_agent_reconnecting_pty_errors_total{reason=\"too_slow\"}") == 1; },
      scaled(seconds(10))));
  EXPECT_TRUE(stalled->waitForEof(scaled(seconds(30))));  // after draining what was in flight
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_sessions"), 1.0);
  ASSERT_TRUE(shellRun(*reader, "echo after-$((3*3))", "after-9"));
}

// Input waiting for the terminal is bounded (1 MiB): beyond it keystrokes are dropped (as a
// full terminal would), counted, and the connection stays usable.
TEST_F(ServicesTest, InputBeyondTheBoundIsDroppedAndCounted) {
  start();
  // A raw-mode terminal nobody reads: writes to it block once its small buffer is full.
  auto a = attach("input", "stty raw -echo; sleep 600");
  std::string chunk(60000, 'k');
  for (int i = 0; i < 40; ++i) a->input(chunk);  // 2.4 MB
  EXPECT_TRUE(waitUntil(
      [&] {
        return metric("wsa_agent_reconnecting_pty_errors_total{reason=\"input_overflow\"}") > 0;
      },
      scaled(seconds(10))));
  // Still attached: a second client sees the same session alive.
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_sessions"), 1.0);
  EXPECT_FALSE(a->waitForEof(milliseconds(200)));
}

TEST_F(ServicesTest, PtyConnectionsAreCountedAndAudited) {
  start();
  auto a = attach("audit");
  ASSERT_TRUE(shellRun(*a, "echo counted", "counted"));
  ASSERT_TRUE(
      waitUntil([&] { return cd_->agentView()["stats"]["session_count_reconnecting_pty"] == "1"; },
                scaled(seconds(15))))
      << cd_->agentView()["stats"].dump();
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_connections"), 1.0);
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_sessions"), 1.0);
  EXPECT_EQ(metric("wsa_agent_reconnecting_pty_connections_total"), 1.0);
  a->input("exit\r");
  ASSERT_TRUE(a->waitForEof(scaled(seconds(10))));
  json conns;
  ASSERT_TRUE(waitUntil(
      [&] {
        conns = cd_->agentView()["connections"];
        return conns.size() >= 2;
      },
      scaled(seconds(10))));
  EXPECT_EQ(conns[0]["type"], "reconnecting_pty");
  EXPECT_EQ(conns[0]["action"], "connect");
  EXPECT_EQ(conns[1]["action"], "disconnect");
  EXPECT_EQ(conns[0]["id"], conns[1]["id"]);
  EXPECT_EQ(conns[0]["ip"], "127.0.0.1");
  EXPECT_EQ(conns[1]["status_code"], 0);
  // A command's exit code is what the disconnect reports.
  auto b = attach("audit-3", "exit 3");
  ASSERT_TRUE(b->waitForEof(scaled(seconds(10))));
  ASSERT_TRUE(
      waitUntil([&] { return cd_->agentView()["connections"].size() >= 4; }, scaled(seconds(10))));
  EXPECT_EQ(cd_->agentView()["connections"][3]["status_code"], 3);
  EXPECT_TRUE(
      waitUntil([&] { return cd_->agentView()["stats"]["session_count_reconnecting_pty"] == "0"; },
                scaled(seconds(15))));
}

TEST_F(ServicesTest, ShutdownEndsPtySessions) {
  start();
  auto a = attach("shutdown");
  pid_t shell = shellPid(*a);
  ASSERT_GT(shell, 0);
  EXPECT_EQ(agent_->stop(), 0);
  EXPECT_TRUE(a->waitForEof(scaled(seconds(5))));
  EXPECT_TRUE(waitUntil([&] { return !processAlive(shell); }, scaled(seconds(10))));
}

// --- Speed test -------------------------------------------------------------------------------

json speedtest(const std::string& address, const std::string& direction) {
  auto r = runSplit({WSA_SPEEDTEST_PATH, address, "-d", direction, "-t", "2s", "--json"},
                    scaled(seconds(30)));
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out.empty() ? "{}" : r.out);
}

std::string speedtestRaw(const std::string& address, const std::string& line) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(portOf(address)));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return "<connect failed>";
  timeval tv{static_cast<time_t>(scaled(seconds(5)).count() / 1000), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST_F(ServicesTest, SpeedtestBothDirectionsReportPlausibleRates) {
  start();
  for (const char* dir : {"download", "upload"}) {
    json r = speedtest(speedtest_, dir);
    ASSERT_TRUE(r.contains("total")) << dir << ": " << r.dump();
    EXPECT_EQ(r["direction"], dir);
    EXPECT_GE(r["intervals"].size(), 2u) << r.dump();
    EXPECT_NEAR(r["total"]["end_s"].get<double>(), 2.0, 0.5) << r.dump();
    // Loopback moves gigabits per second; 50 Mbit/s is a floor any working build clears,
    // sanitizers included.
    EXPECT_GT(r["total"]["bits_per_second"].get<double>(), 50e6) << r.dump();
    uint64_t sum = 0;
    for (const auto& i : r["intervals"]) {
      sum += i["bytes"].get<uint64_t>();
      EXPECT_GT(i["bytes"].get<uint64_t>(), 0u) << r.dump();
    }
    EXPECT_EQ(sum, r["total"]["bytes"].get<uint64_t>());
  }
  EXPECT_EQ(metric("wsa_agent_speedtests_total{direction=\"download\",result=\"ok\"}"), 1.0);
  EXPECT_EQ(metric("wsa_agent_speedtests_total{direction=\"upload\",result=\"ok\"}"), 1.0);
}

TEST_F(ServicesTest, SpeedtestRejectsBadConfigsWithAMessage) {
  start();
  struct Case {
    std::string line;
    std::string error;
  };
  std::vector<Case> cases = {
      {"not json\n", "not a JSON object"},
      {"{\"version\":2,\"direction\":\"download\",\"duration_ms\":1000}\n",
       "unsupported version 2"},
      {"{\"version\":1,\"direction\":\"sideways\",\"duration_ms\":1000}\n", "sideways"},
      {"{\"version\":1,\"direction\":\"upload\",\"duration_ms\":0}\n", "outside 1000..30000"},
      {"{\"version\":1,\"direction\":\"upload\",\"duration_ms\":3600000}\n", "outside 1000..30000"},
      {"{\"version\":1,\"direction\":\"upload\"}\n", "duration_ms"},
      {std::string(5000, 'x'), "longer than 4096"},
  };
  for (const auto& c : cases) {
    std::string reply = speedtestRaw(speedtest_, c.line);
    json j = json::parse(reply, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << c.line << " → " << reply;
    ASSERT_TRUE(j.contains("error")) << reply;
    EXPECT_NE(j["error"].get<std::string>().find(c.error), std::string::npos) << reply;
  }
  // The tool reports the agent's message too.
  auto r = runSplit({WSA_SPEEDTEST_PATH, speedtest_, "-t", "40s"}, scaled(seconds(10)));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("outside 1000..30000"), std::string::npos) << r.err;
}

// --- HTTP API ---------------------------------------------------------------------------------

class Listening {
 public:
  Listening(int family, const char* ip) {
    fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
      sa->sin_family = AF_INET;
      ::inet_pton(AF_INET, ip, &sa->sin_addr);
      len = sizeof(sockaddr_in);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
      sa->sin6_family = AF_INET6;
      ::inet_pton(AF_INET6, ip, &sa->sin6_addr);
      len = sizeof(sockaddr_in6);
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                              : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  ~Listening() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

std::map<int, std::string> listedPorts(const std::string& api) {
  auto r = httpRequest("GET", api + "/api/v0/listening-ports");
  EXPECT_EQ(r.status, 200) << r.body;
  std::map<int, std::string> out;
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) return out;
  for (const auto& p : j["ports"]) {
    EXPECT_EQ(p["network"], "tcp");
    out[p["port"].get<int>()] = p["process_name"].get<std::string>();
  }
  return out;
}

TEST_F(ServicesTest, ListeningPortsFindsIpv4AndIpv6ListenersAndHidesTheAgents) {
  start();
  Listening v4(AF_INET, "127.0.0.1");
  Listening v6(AF_INET6, "::1");
  std::string comm = std::string(trimView(readText("/proc/self/comm")));
  std::map<int, std::string> ports;
  // Results are cached for about a second: the new listeners show up within a few.
  ASSERT_TRUE(waitUntil(
      [&] {
        ports = listedPorts(api_);
        return ports.count(v4.port()) == 1 && ports.count(v6.port()) == 1;
      },
      scaled(seconds(5)), milliseconds(200)));
  EXPECT_EQ(ports[v4.port()], comm);
  EXPECT_EQ(ports[v6.port()], comm);
  for (const char* own : {"pty", "speedtest", "api", "prometheus", "debug"}) {
    int p = portOf(agent_->ready()[own]);
    EXPECT_EQ(ports.count(p), 0u) << own << " port " << p << " listed";
  }
  for (const auto& [p, name] : ports) EXPECT_GE(p, 9);
  // Concurrent requests while a scan runs are all answered.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&] {
      if (httpRequest("GET", api_ + "/api/v0/listening-ports").status == 200) ok++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 20);
}

TEST_F(ServicesTest, HttpApiRoutesAndErrors) {
  start();
  auto hello = httpRequest("GET", api_ + "/");
  EXPECT_EQ(hello.status, 200);
  EXPECT_EQ(json::parse(hello.body)["message"], "Hello from the wsa agent!");
  auto missing = httpRequest("GET", api_ + "/api/v0/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(json::parse(missing.body).contains("error")) << missing.body;
  EXPECT_EQ(httpRequest("POST", api_ + "/", "{}").status, 405);
  auto manifest = httpRequest("GET", api_ + "/debug/manifest");
  EXPECT_EQ(manifest.status, 200);
  EXPECT_FALSE(json::parse(manifest.body, nullptr, false).is_discarded());
  auto logs = httpRequest("GET", api_ + "/debug/logs");
  EXPECT_EQ(logs.status, 200);
  EXPECT_NE(logs.body.find("serving the HTTP API"), std::string::npos);
  EXPECT_NE(httpRequest("GET", api_ + "/debug/prometheus").body.find("wsa_agent_info"),
            std::string::npos);
  EXPECT_GE(metric("wsa_agent_api_requests_total{code=\"200\",route=\"/\"}"), 1.0);
  EXPECT_GE(metric("wsa_agent_api_requests_total{code=\"404\",route=\"unknown\"}"), 1.0);
}

TEST_F(ServicesTest, BadListenAddressesAreClearErrors) {
  json c = basicControldConfig();
  cd_ = std::make_unique<ControldHarness>(c);
  cd_->start();
  TempDir d;
  writeText(d.file("token"), cd_->agentToken());
  for (auto [flag, value, expect] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--pty-listen", "nonsense", "--pty-listen"},
           {"--speedtest-listen", "300.1.1.1:5", "is not an IP address"},
           {"--api-listen", "127.0.0.1:99999", "--api-listen"},
           {"--pty-timeout", "0s", "--pty-timeout"},
           // Unauthenticated services stay on loopback unless told otherwise.
           {"--pty-listen", "0.0.0.0:0", "is not a loopback address"},
           {"--pty-listen", ":0", "is not a loopback address"},
           {"--api-listen", "[::]:0", "is not a loopback address"},
           // Flags the parser rejects exit 2 as well (not CLI11's own codes).
           {"--overlay-port", "70000", "--overlay-port"},
           {"--no-such-flag", "x", "--no-such-flag"}}) {
    auto r = runSplit({agentPath(), "--url", cd_->controlUrl(), "--token-file", d.file("token"),
                       "--log-dir", d.path(), "--data-dir", d.file("state"), "--prometheus-address",
                       "", "--debug-address", "", flag, value},
                      scaled(seconds(10)));
    EXPECT_EQ(r.code, 2) << flag << " " << value << ": " << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << r.err;
  }
}

TEST_F(ServicesTest, UnixSocketAndIpv6LoopbackListenersWork) {
  TempDir d;
  start({"--pty-listen", "unix:" + d.file("pty.sock"), "--api-listen", "[::1]:0"}, {}, false);
  EXPECT_EQ(agent_->ready()["pty"], "unix:" + d.file("pty.sock"));
  // A session over the unix socket.
  std::string body = R"j({"id":"u","command":"echo over-unix-$((8*8))"})j";
  std::string frame = std::string(1, static_cast<char>(body.size())) + std::string(1, '\0') + body;
  std::string out = unixRoundTrip(d.file("pty.sock"), frame, "over-unix-64", scaled(seconds(10)));
  EXPECT_NE(out.find("over-unix-64"), std::string::npos) << out;
  auto r = httpRequest("GET", "http://" + agent_->ready()["api"].get<std::string>() + "/");
  EXPECT_EQ(r.status, 200) << r.error;
}

}  // namespace
}  // namespace wsa::test
