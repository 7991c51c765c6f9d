// The agent's SSH server driven by the real OpenSSH tools: ssh, scp, sftp (and tmux for PTYs).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "support/agent_harness.h"
#include "support/controld_harness.h"
#include "support/http_client.h"
#include "support/ssh_client.h"

namespace wsa::test {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string sha256File(const std::string& path) {
  auto r = run({"sha256sum", path}, seconds(30));
  return r.output.substr(0, 64);
}

void writeRandom(const std::string& path, size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string data(bytes, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  writeText(path, data);
}

class SshTest : public ::testing::Test {
 protected:
  // Starts controld and an agent serving SSH; `tweak` adjusts the agent config first.
  void start(json manifest = json::object(), std::vector<std::string> agent_args = {},
             bool install_key = true) {
    json c = basicControldConfig();
    c["stats_report_interval_seconds"] = 1;
    c["agents"][0]["manifest"] = manifest;
    cd_ = std::make_unique<ControldHarness>(c);
    cd_->start();
    AgentHarness::Options o;
    o.ssh = true;
    o.extra_args = std::move(agent_args);
    agent_ = std::make_unique<AgentHarness>(cd_->controlUrl(), cd_->agentToken(), o);
    if (install_key) authorize(client_.publicKey());
    agent_->start();
    client_.trust("127.0.0.1", agent_->sshPort(), agent_->sshHostPublicKey());
    // Sessions see the manifest once the agent has handed it to its services, which it does
    // before it reports "starting" (controld's startup record comes earlier: too early).
    ASSERT_TRUE(waitUntil([&] { return !cd_->agentView()["lifecycle"].empty(); }, seconds(20)))
        << agent_->log();
  }
  void authorize(const std::string& pub) {
    std::string dir = agent_->home() + "/.ssh";
    ::mkdir(dir.c_str(), 0700);
    std::ofstream f(dir + "/authorized_keys", std::ios::app);
    f << pub;
  }

  SshClient client_;
  std::unique_ptr<ControldHarness> cd_;
  std::unique_ptr<AgentHarness> agent_;
};

TEST_F(SshTest, ExecOutputStreamsExitCodesAndStdinEof) {
  start();
  auto r = client_.ssh({"--", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  // stdin is forwarded and closed at EOF (cat ends, wc counts it).
  auto c = client_.ssh({"--", "cat | wc -c"}, std::string(100000, 'x'));
  EXPECT_EQ(c.code, 0);
  EXPECT_EQ(std::string(trimView(c.out)), "100000");
  // Killed by a signal: OpenSSH reports exit status 255.
  auto k = client_.ssh({"--", "kill -KILL $$"});
  EXPECT_EQ(k.code, 255);
  // A fast command's output is never lost (many short runs).
  for (int i = 0; i < 20; ++i) {
    auto f = client_.ssh({"--", "printf %06d " + std::to_string(i)});
    ASSERT_EQ(f.out, std::string(6 - std::to_string(i).size(), '0') + std::to_string(i));
  }
}

TEST_F(SshTest, HugeOutputIsDeliveredCompletely) {
  start();
  auto r = runSplit(
      {"sh", "-c", "ssh -F " + client_.configPath() + " test-host 'seq 1 2000000' | sha256sum"},
      seconds(60));
  auto ref = runSplit({"sh", "-c", "seq 1 2000000 | sha256sum"}, seconds(30));
  EXPECT_EQ(r.out, ref.out);
}

TEST_F(SshTest, EnvironmentPrecedenceAndSessionVariables) {
  start({{"environment_variables", {{"FROM_MANIFEST", "m"}, {"BOTH", "manifest wins"}}}});
  auto r = client_.ssh({"-o", "SetEnv=BOTH=session FROM_CLIENT=c WSA_SSH_SESSION_TYPE=vscode", "--",
                        "echo $FROM_MANIFEST $BOTH $FROM_CLIENT; "
                        "env | grep -c WSA_SSH_SESSION_TYPE; "
                        "echo $USER $LOGNAME $HOME $SHELL; echo $SSH_CONNECTION; echo $SSH_CLIENT; "
                        "echo $PATH"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "m manifest wins c");
  std::getline(in, line);
  EXPECT_EQ(line, "0");  // the session-type variable is read and removed
  std::getline(in, line);
  EXPECT_NE(line.find(agent_->home()), std::string::npos) << line;
  std::getline(in, line);
  EXPECT_NE(line.find(" 127.0.0.1 " + std::to_string(agent_->sshPort())), std::string::npos)
      << line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("127.0.0.1 ", 0), 0u) << line;
  std::getline(in, line);
  EXPECT_NE(line.find("wsa-script-data/bin:"), std::string::npos) << line;
  // The session was counted as VS Code and reported with that type.
  ASSERT_TRUE(waitUntil([&] { return cd_->agentView()["connections"].size() >= 2; }, seconds(10)));
  EXPECT_EQ(cd_->agentView()["connections"][0]["type"], "vscode");
}

TEST_F(SshTest, WorkingDirectoryIsTheManifestDirectoryElseHome) {
  start({{"directory", "~/project"}});
  auto missing = client_.ssh({"--", "pwd"});
  EXPECT_EQ(missing.out, agent_->home() + "\n");
  std::filesystem::create_directories(agent_->home() + "/project");
  auto present = client_.ssh({"--", "pwd"});
  EXPECT_EQ(present.out, agent_->home() + "/project\n");
}

TEST_F(SshTest, SftpAndScpMoveBinaryFilesIntact) {
  start();
  TempDir local;
  writeRandom(local.file("blob"), 3 * 1024 * 1024 + 17, 1);
  std::string remote_dir = agent_->home() + "/xfer";
  std::filesystem::create_directories(remote_dir);
  auto s = client_.sftp("put " + local.file("blob") + " " + remote_dir + "/blob\n" + "ls -l " +
                        remote_dir + "\n" + "rename " + remote_dir + "/blob " + remote_dir +
                        "/renamed\n" + "get " + remote_dir + "/renamed " + local.file("back") +
                        "\n" + "rm " + remote_dir + "/renamed\n");
  ASSERT_EQ(s.code, 0) << s.err << s.out;
  EXPECT_NE(s.out.find("blob"), std::string::npos);
  EXPECT_EQ(sha256File(local.file("back")), sha256File(local.file("blob")));
  EXPECT_FALSE(pathExists(remote_dir + "/renamed"));
  // scp both ways (OpenSSH 9 scp speaks sftp).
  auto up = client_.scp({local.file("blob"), client_.remote(remote_dir + "/scp.bin")});
  ASSERT_EQ(up.code, 0) << up.err;
  EXPECT_EQ(sha256File(remote_dir + "/scp.bin"), sha256File(local.file("blob")));
  auto down = client_.scp({client_.remote(remote_dir + "/scp.bin"), local.file("scp.back")});
  ASSERT_EQ(down.code, 0) << down.err;
  EXPECT_EQ(sha256File(local.file("scp.back")), sha256File(local.file("blob")));
  // Legacy scp protocol (exec of scp on the workspace) works too.
  auto legacy = client_.scp({"-O", local.file("blob"), client_.remote(remote_dir + "/legacy.bin")});
  ASSERT_EQ(legacy.code, 0) << legacy.err;
  EXPECT_EQ(sha256File(remote_dir + "/legacy.bin"), sha256File(local.file("blob")));
}

// A port below the kernel's ephemeral range (32768+, where client sockets of concurrent tests
// live) that is free right now.
int freePort() {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int port = 10000 + static_cast<int>(std::random_device{}() % 20000);
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
    ::close(s);
    if (ok) return port;
  }
  return 0;
}

// A TCP server on loopback answering one line per connection.
class LineServer {
 public:
  explicit LineServer(const std::string& reply) {
    int port = 0;
    for (int attempt = 0; attempt < 20 && port == 0; ++attempt) {
      int candidate = freePort();
      Process::Options o;
      o.argv = {"socat",
                "TCP-LISTEN:" + std::to_string(candidate) + ",bind=127.0.0.1,reuseaddr,fork",
                "SYSTEM:echo " + reply};
      auto p = Process::start(o);
      bool up = waitUntil(
          [&] {
            return !p->running() ||
                   run({"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(candidate)},
                       seconds(2))
                           .code == 0;
          },
          seconds(5));
      if (up && p->running()) {
        port = candidate;
        proc_ = std::move(p);
      }
    }
    port_ = port;
  }
  int port() const { return port_; }

 private:
  std::unique_ptr<Process> proc_;
  int port_;
};

std::string fetchLine(int port) {
  auto r = runSplit(
      {"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) + "; head -1 <&3"},
      seconds(10));
  return std::string(trimView(r.out));  // empty when nothing answers
}

TEST_F(SshTest, LocalAndRemotePortForwarding) {
  start();
  LineServer workspace_service("from-workspace");
  ASSERT_NE(workspace_service.port(), 0);
  int local = freePort();
  Process::Options lo;
  lo.argv = client_.sshArgv(
      {"-N", "-o", "ExitOnForwardFailure=yes", "-L",
       std::to_string(local) + ":127.0.0.1:" + std::to_string(workspace_service.port()), "--"});
  auto l = Process::start(lo);
  std::string got;
  EXPECT_TRUE(waitUntil([&] { return (got = fetchLine(local)) == "from-workspace"; }, seconds(15)))
      << got;
  l->kill();

  LineServer client_service("from-client");
  int remote = freePort();
  Process::Options ro;
  ro.argv = client_.sshArgv(
      {"-N", "-o", "ExitOnForwardFailure=yes", "-R",
       std::to_string(remote) + ":127.0.0.1:" + std::to_string(client_service.port()), "--"});
  auto r = Process::start(ro);
  EXPECT_TRUE(waitUntil([&] { return (got = fetchLine(remote)) == "from-client"; }, seconds(15)))
      << got;
  r->kill();
  // After the client leaves, the remote listener is gone.
  EXPECT_TRUE(waitUntil([&] { return fetchLine(remote).empty(); }, seconds(10)));

  // Port 0: the server picks one and tells the client.
  auto zero =
      client_.ssh({"-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=INFO", "-R",
                   "0:127.0.0.1:" + std::to_string(client_service.port()), "--", "echo ok"});
  EXPECT_EQ(zero.code, 0) << zero.err;
  EXPECT_NE(zero.err.find("Allocated port"), std::string::npos) << zero.err;
}

TEST_F(SshTest, AgentForwardingExposesTheClientsKeys) {
  start();
  TempDir d;
  std::string sock = d.file("agent.sock");
  Process::Options ao;
  ao.argv = {"ssh-agent", "-D", "-a", sock};
  auto agent_proc = Process::start(ao);
  ASSERT_TRUE(waitUntil([&] { return pathExists(sock); }, seconds(10)));
  auto add = run({"ssh-add", client_.keyPath()}, seconds(10), {"SSH_AUTH_SOCK=" + sock});
  ASSERT_EQ(add.code, 0) << add.output;
  auto r = client_.ssh({"-A", "-o", "IdentityAgent=" + sock, "--", "ssh-add -l"}, "", seconds(30),
                       {"SSH_AUTH_SOCK=" + sock});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("wsa-test"), std::string::npos) << r.out;
  // Without -A there is no agent in the session.
  auto none = client_.ssh({"--", "echo \"[$SSH_AUTH_SOCK]\""});
  EXPECT_EQ(none.out, "[]\n");
}

TEST_F(SshTest, X11ForwardingSetsDisplayAndXauthority) {
  start();
  auto r = client_.ssh({"-X", "-o", "ForwardX11Trusted=yes", "--", "echo $DISPLAY; xauth list"}, "",
                       seconds(30), {"DISPLAY=:99"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream in(r.out);
  std::string display;
  std::getline(in, display);
  EXPECT_EQ(display.rfind("localhost:", 0), 0u) << display;
  std::string num = display.substr(10, display.find('.') - 10);
  EXPECT_NE(r.out.find("unix:" + num), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MIT-MAGIC-COOKIE-1"), std::string::npos) << r.out;
}

TEST_F(SshTest, BlockedModesAnswerLikeTheReference) {
  start(json::object(), {"--block-file-transfer", "--block-local-port-forwarding",
                         "--block-reverse-port-forwarding"});
  TempDir local;
  writeText(local.file("f"), "data");
  auto sftp = client_.sftp("put " + local.file("f") + " /tmp/never\n");
  EXPECT_NE(sftp.code, 0);
  auto scp = client_.scp({"-O", local.file("f"), client_.remote("/tmp/never")});
  EXPECT_NE(scp.code, 0);
  auto exec = client_.ssh({"--", "scp -t /tmp/never"});
  EXPECT_EQ(exec.code, 65);
  EXPECT_NE(exec.err.find("File transfer has been disabled."), std::string::npos) << exec.err;
  // Other commands still work.
  EXPECT_EQ(client_.ssh({"--", "echo fine"}).out, "fine\n");
  auto lf =
      client_.ssh({"-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=INFO", "-W", "127.0.0.1:22"});
  EXPECT_NE(lf.code, 0);
  EXPECT_NE(lf.err.find("administratively prohibited"), std::string::npos) << lf.err;
  auto rf = client_.ssh({"-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "--", "true"});
  EXPECT_NE(rf.code, 0);
  EXPECT_NE(rf.err.find("remote port forwarding failed"), std::string::npos) << rf.err;
}

TEST_F(SshTest, WrongKeyIsRefused) {
  start(json::object(), {}, /*install_key=*/false);
  auto r = client_.ssh({"--", "true"});
  EXPECT_EQ(r.code, 255);
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
}

TEST_F(SshTest, TwentyConcurrentSessionsEachMoveTenMiB) {
  start();
  TempDir local;
  writeRandom(local.file("ten"), 10 * 1024 * 1024, 7);
  std::string want = sha256File(local.file("ten"));
  std::vector<std::future<std::pair<std::string, std::string>>> results;
  for (int i = 0; i < 20; ++i) {
    results.push_back(std::async(std::launch::async, [&, i] {
      // Up: 10 MiB in, checksum out. Down: 10 MiB out of the workspace, checksummed here.
      auto up = runSplit(client_.sshArgv({"--", "sha256sum"}), seconds(120), {},
                         readText(local.file("ten")));
      auto down = runSplit({"sh", "-c",
                            "ssh -F " + client_.configPath() + " test-host 'cat " +
                                local.file("ten") + "' | sha256sum"},
                           seconds(120));
      (void)i;
      return std::make_pair(up.out.substr(0, 64) + up.err, down.out.substr(0, 64) + down.err);
    }));
  }
  for (auto& f : results) {
    auto [up, down] = f.get();
    EXPECT_EQ(up, want);
    EXPECT_EQ(down, want);
  }
}

TEST_F(SshTest, HostKeyIsStableAcrossRestartsAndSessionsAreAudited) {
  start();
  std::string fp = agent_->sshFingerprint();
  ASSERT_FALSE(fp.empty());
  EXPECT_EQ(client_.ssh({"--", "exit 3"}).code, 3);
  // Audit: one CONNECT and one DISCONNECT with the exit code, same id, in order.
  json conns;
  ASSERT_TRUE(waitUntil(
      [&] {
        conns = cd_->agentView()["connections"];
        return conns.size() >= 2;
      },
      seconds(10)));
  EXPECT_EQ(conns[0]["action"], "connect");
  EXPECT_EQ(conns[1]["action"], "disconnect");
  EXPECT_EQ(conns[0]["id"], conns[1]["id"]);
  EXPECT_EQ(conns[1]["status_code"], 3);
  EXPECT_EQ(conns[0]["ip"], "127.0.0.1");
  EXPECT_EQ(conns[0]["type"], "ssh");
  // Restart the agent: same host key (the client checks it strictly).
  EXPECT_EQ(agent_->stop(), 0);
  agent_->start();
  EXPECT_EQ(agent_->sshFingerprint(), fp);
  client_.trust("127.0.0.1", agent_->sshPort(), agent_->sshHostPublicKey());
  EXPECT_EQ(client_.ssh({"--", "echo again"}).out, "again\n");
}

TEST_F(SshTest, SessionsAreCountedInStatsAndMetrics) {
  start();
  Process::Options o;
  o.argv = client_.sshArgv({"--", "sleep 30"});
  auto held = Process::start(o);
  ASSERT_TRUE(waitUntil(
      [&] {
        auto st = cd_->agentView()["stats"];
        return !st.is_null() && st["session_count_ssh"] == "1";
      },
      seconds(15)))
      << cd_->agentView()["stats"].dump();
  EXPECT_NE(agent_->metrics().find("wsa_agent_ssh_sessions{type=\"ssh\"} 1"), std::string::npos);
  held->kill();
  EXPECT_TRUE(waitUntil([&] { return cd_->agentView()["stats"]["session_count_ssh"] == "0"; },
                        seconds(15)));
}

TEST_F(SshTest, GracefulShutdownEndsSessionsWithinItsBound) {
  start();
  // A command line no other process on the machine has (other test runs may hold a
  // `sleep 300` of their own), so the check below sees only this session's process.
  const std::string sleeper = "sleep 300." + std::to_string(::getpid());
  Process::Options o;
  o.argv = client_.sshArgv({"-tt", "--", sleeper});
  auto held = Process::start(o);
  ASSERT_TRUE(waitUntil(
      [&] {
        return agent_->metrics().find("wsa_agent_ssh_sessions{type=\"ssh\"} 1") !=
               std::string::npos;
      },
      seconds(15)));
  auto start_t = std::chrono::steady_clock::now();
  EXPECT_EQ(agent_->stop(), 0) << agent_->log();
  EXPECT_LT(std::chrono::steady_clock::now() - start_t, seconds(15));
  auto code = held->wait(milliseconds(10000));
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);  // the client saw its session end
  // The PTY session's process does not outlive the agent: it got SIGHUP, and is gone once the
  // kernel has delivered it (on a busy machine that can take a moment after the agent exits).
  RunResult r;
  EXPECT_TRUE(waitUntil(
      [&] {
        r = run({"pgrep", "-xf", sleeper}, seconds(5));
        return r.code != 0;
      },
      seconds(5), milliseconds(50)))
      << "still running: " << r.output;
}

}  // namespace
}  // namespace wsa::test

namespace wsa::test {
namespace {

// tmux as the user's terminal: a real PTY on the client side.
class Tmux {
 public:
  explicit Tmux(const std::vector<std::string>& command) {
    socket_ = dir_.file("tmux.sock");
    std::string cmd;
    for (const auto& a : command) cmd += "'" + a + "' ";
    auto r =
        run({"tmux", "-S", socket_, "new-session", "-d", "-s", "t", "-x", "120", "-y", "40", cmd},
            std::chrono::seconds(10), {"TERM=xterm-256color"});
    ok_ = r.code == 0;
  }
  ~Tmux() { run({"tmux", "-S", socket_, "kill-server"}, std::chrono::seconds(10)); }
  bool ok() const { return ok_; }
  void type(const std::string& keys) {
    run({"tmux", "-S", socket_, "send-keys", "-t", "t", "-l", keys}, std::chrono::seconds(10));
    run({"tmux", "-S", socket_, "send-keys", "-t", "t", "Enter"}, std::chrono::seconds(10));
  }
  std::string screen() {
    return run({"tmux", "-S", socket_, "capture-pane", "-p", "-t", "t"}, std::chrono::seconds(10))
        .output;
  }
  bool waitFor(const std::string& text, std::chrono::milliseconds t = std::chrono::seconds(15)) {
    return waitUntil([&] { return screen().find(text) != std::string::npos; }, t,
                     std::chrono::milliseconds(50));
  }
  void resize(int cols, int rows) {
    run({"tmux", "-S", socket_, "resize-window", "-t", "t", "-x", std::to_string(cols), "-y",
         std::to_string(rows)},
        std::chrono::seconds(10));
  }
  bool alive() {
    return run({"tmux", "-S", socket_, "has-session", "-t", "t"}, std::chrono::seconds(10)).code ==
           0;
  }

 private:
  TempDir dir_;
  std::string socket_;
  bool ok_ = false;
};

TEST_F(SshTest, InteractiveLoginShellWithPtyAndWindowChanges) {
  start();
  Tmux t(client_.sshArgv({"-tt", "--"}));
  ASSERT_TRUE(t.ok());
  // The remote login shell is ready when its last line is a prompt ending in '#' or '$'
  // (tmux trims trailing spaces).
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = std::string(trimView(t.screen()));
        return !s.empty() && (s.back() == '#' || s.back() == '$');
      },
      seconds(15)))
      << t.screen();
  t.type("echo MARK-$TERM-$((6*7))-$0");
  // TERM is the client's (tmux's), and it is a login shell: $0 starts with '-'.
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = t.screen();
        auto p = s.find("\nMARK-");
        return p != std::string::npos && s.find("-42--", p) != std::string::npos &&
               s.find("256color", p) != std::string::npos;
      },
      seconds(15)))
      << t.screen();
  t.type("echo SIZE $(stty size) TTY $SSH_TTY $(tty)");
  ASSERT_TRUE(t.waitFor("SIZE 40 120")) << t.screen();
  auto scr = t.screen();
  auto pos = scr.find("TTY /dev/pts/");
  ASSERT_NE(pos, std::string::npos) << scr;
  std::string rest = scr.substr(pos + 4);
  std::string ssh_tty = rest.substr(0, rest.find(' '));
  EXPECT_NE(rest.find(" " + ssh_tty), std::string::npos) << "SSH_TTY should name the session's tty";
  t.resize(100, 30);
  t.type("echo RESIZED $(stty size)");
  EXPECT_TRUE(t.waitFor("RESIZED 30 100")) << t.screen();
  t.type("exit 4");
  EXPECT_TRUE(waitUntil([&] { return !t.alive(); }, seconds(15)));
}

TEST_F(SshTest, BannersAndMotdBeforeTheFirstPromptUnlessHushed) {
  TempDir files;
  writeText(files.file("motd"), "Message of the day\nsecond line\n");
  json manifest = {{"motd_path", files.file("motd")}};
  // The banner comes from controld's configuration.
  json c = basicControldConfig();
  c["banner"] = {{"enabled", true}, {"message", "  Maintenance on Sunday  \n"}};
  c["agents"][0]["manifest"] = manifest;
  cd_ = std::make_unique<ControldHarness>(c);
  cd_->start();
  AgentHarness::Options o;
  o.ssh = true;
  agent_ = std::make_unique<AgentHarness>(cd_->controlUrl(), cd_->agentToken(), o);
  authorize(client_.publicKey());
  agent_->start();
  client_.trust("127.0.0.1", agent_->sshPort(), agent_->sshHostPublicKey());
  ASSERT_TRUE(waitUntil(
      [&] {
        auto b = agent_->debugState()["banners"];
        return !b.empty();
      },
      seconds(20)));
  // Login shell with a PTY: banner (trimmed, then a blank line), then the MOTD, CRLF endings.
  auto login = client_.ssh({"-tt", "--"}, "echo END-OF-SESSION; exit\n");
  auto banner = login.out.find("Maintenance on Sunday\r\n\r\n");
  auto motd = login.out.find("Message of the day\r\nsecond line\r\n");
  auto end = login.out.find("END-OF-SESSION");
  ASSERT_NE(banner, std::string::npos) << login.out;
  ASSERT_NE(motd, std::string::npos) << login.out;
  ASSERT_NE(end, std::string::npos) << login.out;
  EXPECT_LT(banner, motd);
  EXPECT_LT(motd, end);
  // A command never shows either.
  auto cmd = client_.ssh({"-tt", "--", "echo only-this"});
  EXPECT_EQ(cmd.out.find("Maintenance"), std::string::npos) << cmd.out;
  EXPECT_EQ(cmd.out.find("Message of the day"), std::string::npos);
  // ~/.hushlogin hides the MOTD but not the banner.
  writeText(agent_->home() + "/.hushlogin", "");
  auto hushed = client_.ssh({"-tt", "--"}, "echo END-OF-SESSION; exit\n");
  EXPECT_NE(hushed.out.find("Maintenance on Sunday"), std::string::npos) << hushed.out;
  EXPECT_EQ(hushed.out.find("Message of the day"), std::string::npos) << hushed.out;
  // A PTY command that does not exist exits 127.
  EXPECT_EQ(client_.ssh({"-tt", "--", "no-such-command-here"}).code, 127);
}

}  // namespace
}  // namespace wsa::test

namespace wsa::test {
namespace {

// Unix-socket forwarding (OpenSSH streamlocal) cannot be served with Debian 12's libssh 0.10.6:
// it parses neither direct-streamlocal@openssh.com nor streamlocal-forward@openssh.com (see
// docs/ssh.md). Both directions must fail cleanly, never hang or half-work.
TEST_F(SshTest, UnixSocketForwardingFailsCleanly) {
  start();
  TempDir d;
  auto r = client_.ssh(
      {"-o", "ExitOnForwardFailure=yes", "-R", d.file("r.sock") + ":/run/x.sock", "--", "echo up"},
      "", seconds(20));
  EXPECT_EQ(r.code, 255);
  EXPECT_NE(r.err.find("remote port forwarding failed"), std::string::npos) << r.err;
  Process::Options o;
  o.argv =
      client_.sshArgv({"-o", "LogLevel=INFO", "-N", "-L", d.file("l.sock") + ":/run/x.sock", "--"});
  o.stderr_path = d.file("l.err");
  auto l = Process::start(o);
  ASSERT_TRUE(waitUntil([&] { return pathExists(d.file("l.sock")); }, seconds(10)));
  bool refused = waitUntil(
      [&] {
        run({"socat", "-", "UNIX-CONNECT:" + d.file("l.sock")}, seconds(5));
        return readText(d.file("l.err")).find("open failed") != std::string::npos;
      },
      seconds(10));
  EXPECT_TRUE(refused) << readText(d.file("l.err"));
  l->kill();
}

}  // namespace
}  // namespace wsa::test
