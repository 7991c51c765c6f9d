// Our WireGuard engine (the wsa-wg binary: engine + TUN + UDP) against the real wireguard-go,
// each in its own network namespace joined by a veth pair. Both are configured with the real
// `wg` tool through their configuration sockets; traffic is the kernel's ping and TCP (socat)
// over the two TUN interfaces. Underlay 198.18.252.0/24, overlay 100.64.77.0/24 and
// fd7a:115c:a1e0:77::/64: nothing leaves the namespaces.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "support/http_client.h"
#include "support/netns.h"
#include "support/process.h"
#include "support/util.h"

namespace wsa::test {
namespace {

using namespace std::chrono_literals;

constexpr size_t kTransferBytes = 100u << 20;  // 100 MiB
const char* const kOurPort = "51820";
const char* const kGoPort = "51821";

std::string overlay4(int side) {
  return side == 0 ? "100.64.77.1" : "100.64.77.2";
}
std::string overlay6(int side) {
  return side == 0 ? "fd7a:115c:a1e0:77::1" : "fd7a:115c:a1e0:77::2";
}

// One request on a WireGuard configuration socket; the answer's key=value lines (the last
// value of a repeated key wins, fine for one peer).
std::map<std::string, std::string> uapi(const std::string& path, const std::string& request) {
  std::map<std::string, std::string> out;
  std::string text = unixRoundTrip(path, request + "\n\n", "\n\n");
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

uint64_t num(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : std::stoull(it->second);
}

// 100 MiB of pseudo-random bytes (xorshift: incompressible enough for a tunnel) and their
// SHA-256 (hex), made once per test process and hashed as they are written.
struct TransferFile {
  std::string path;
  std::string sha256;
};
const TransferFile& transferFile() {
  static TempDir dir;
  static TransferFile file = [] {
    TransferFile t{dir.file("data"), ""};
    std::ofstream f(t.path, std::ios::binary);
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ static_cast<uint64_t>(::getpid());
    std::vector<uint64_t> block(1 << 16);
    for (size_t done = 0; done < kTransferBytes; done += block.size() * 8) {
      for (auto& w : block) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w = x;
      }
      f.write(reinterpret_cast<const char*>(block.data()),
              static_cast<std::streamsize>(block.size() * 8));
      EVP_DigestUpdate(md, block.data(), block.size() * 8);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    static const char* hex = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      t.sha256 += hex[digest[i] >> 4];
      t.sha256 += hex[digest[i] & 15];
    }
    return t;
  }();
  return file;
}

class WgInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = netnsUnavailableReason(); !why.empty()) GTEST_SKIP() << why;
    // As root the peers must be here: a missing one is a broken setup, not a skip.
    ASSERT_TRUE(pathExists("/usr/bin/wireguard-go")) << "install wireguard-go";
    ASSERT_TRUE(pathExists("/usr/bin/wg")) << "install wireguard-tools";
    pair_ = std::make_unique<NetnsPair>();
    ASSERT_TRUE(pair_->ok()) << pair_->error();
    if_[0] = pair_->ifname(0, "wg");
    if_[1] = pair_->ifname(1, "wg");
    for (int s = 0; s < 2; ++s) {
      sock_[s] = "/var/run/wireguard/" + if_[s] + ".sock";
      auto k = makeWgKeyPair(tmp_.file("key" + std::to_string(s)));
      key_[s] = k.private_path;
      pub_[s] = k.public_key;
    }
  }

  void TearDown() override {
    if (ours_) {
      ours_->signal(SIGTERM);
      if (!ours_->wait(scaled(5s))) ours_->kill();
    }
    go_.reset();
    ::unlink(sock_[0].c_str());
    if (HasFailure()) {
      for (int s = 0; s < 2; ++s) {
        std::cerr << "---- " << (s == 0 ? "wsa-wg" : "wireguard-go") << " log (tail) ----\n";
        std::string log = readText(tmp_.file(std::to_string(s) + ".log"));
        std::cerr << (log.size() > 6000 ? log.substr(log.size() - 6000) : log) << "\n";
      }
    }
    pair_.reset();
  }

  // Starts our engine (side 0) and wireguard-go (side 1), and waits for their sockets.
  // With `netstack`, our side has no TUN interface: its userspace TCP/IP stack answers on the
  // overlay addresses and forwards TCP to its namespace's loopback.
  void startBoth(bool netstack = false) {
    netstack_ = netstack;
    Process::Options o;
    o.argv = {WSA_WG_PATH,
              "--log-level",
              "debug",
              "--metrics-listen",
              "unix:" + tmp_.file("metrics.sock"),
              if_[0]};
    if (netstack) o.argv.insert(o.argv.end() - 1, {"--netstack", overlay4(0) + "," + overlay6(0)});
    o.argv = pair_->exec(0, o.argv);
    o.stdout_path = o.stderr_path = tmp_.file("0.log");
    ours_ = Process::start(o);
    ASSERT_TRUE(ours_);
    go_ = std::make_unique<WireguardGo>(*pair_, 1, if_[1], tmp_.file("1.log"));
    ASSERT_TRUE(go_->waitReady(scaled(10s))) << sock_[1] << " never appeared";
    ASSERT_TRUE(waitUntil([&] { return pathExists(sock_[0]); }, scaled(10s)))
        << sock_[0] << " never appeared";
  }

  // `wg set` on `side` for its peer (the other side); `peer_key` overrides the peer's public key.
  void configure(int side, bool with_endpoint, const std::string& peer_key = "") {
    int other = 1 - side;
    std::vector<std::string> argv = {"wg",
                                     "set",
                                     if_[side],
                                     "listen-port",
                                     side == 0 ? kOurPort : kGoPort,
                                     "private-key",
                                     key_[side],
                                     "peer",
                                     peer_key.empty() ? pub_[other] : peer_key,
                                     "allowed-ips",
                                     overlay4(other) + "/32," + overlay6(other) + "/128"};
    if (with_endpoint) {
      argv.push_back("endpoint");
      argv.push_back(pair_->underlay(other) + ":" + (other == 0 ? kOurPort : kGoPort));
    }
    auto r = pair_->run(side, argv);
    ASSERT_EQ(r.code, 0) << r.output;
    if (side == 0 && netstack_) return;  // no interface to configure
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"ip", "addr", "add", overlay4(side) + "/24", "dev", if_[side]},
             {"ip", "-6", "addr", "add", overlay6(side) + "/64", "dev", if_[side], "nodad"},
             {"ip", "link", "set", if_[side], "up"}}) {
      auto c = pair_->run(side, cmd);
      ASSERT_EQ(c.code, 0) << c.output;
    }
  }

  // Responder first (so the first initiation is not lost), then the initiator with an endpoint.
  void setUp(int initiator) {
    ASSERT_NO_FATAL_FAILURE(startBoth());
    ASSERT_NO_FATAL_FAILURE(configure(1 - initiator, false));
    ASSERT_NO_FATAL_FAILURE(configure(initiator, true));
  }

  RunResult ping(int from, const std::string& to) {
    return pair_->run(from, {"ping", "-c", "3", "-i", "0.2", "-W", "3", to}, scaled(20s));
  }

  std::map<std::string, std::string> ours() { return uapi(sock_[0], "wsa_counters=1"); }
  std::map<std::string, std::string> goGet() { return uapi(sock_[1], "get=1"); }

  // A TCP transfer of the test file from `from` to the other side over `family` (4 or 6),
  // started in the background; finish() waits and returns the received checksum.
  struct Transfer {
    std::unique_ptr<Process> receiver, sender;
    std::string sum_path, sender_log;
  };
  // `copies` times the transfer file, one after the other.
  Transfer startTransfer(int from, int family, int port, int copies = 1) {
    int to = 1 - from;
    Transfer t;
    t.sum_path = tmp_.file("sum" + std::to_string(port));
    std::string listen = (family == 6 ? "TCP6-LISTEN:" : "TCP4-LISTEN:") + std::to_string(port);
    Process::Options r;
    r.argv = pair_->exec(
        to, {"sh", "-c", "socat -u " + listen + ",reuseaddr - | sha256sum > " + t.sum_path});
    t.receiver = Process::start(r);
    std::string dest = family == 6 ? "TCP6:[" + overlay6(to) + "]:" : "TCP4:" + overlay4(to) + ":";
    Process::Options s;
    std::string files;
    for (int i = 0; i < copies; ++i) files += " " + transferFile().path;
    s.argv = pair_->exec(from, {"sh", "-c",
                                "cat" + files + " | socat -u - " + dest + std::to_string(port) +
                                    ",retry=200,interval=0.05"});
    t.sender_log = s.stderr_path = tmp_.file("sender" + std::to_string(port) + ".log");
    t.sender = Process::start(s);
    return t;
  }
  // Through our userspace stack: side 1 (wireguard-go) connects to our overlay address; on our
  // side a server on the namespace's loopback (IPv4 or IPv6) receives (`upload`) or sends.
  Transfer startForwarded(bool upload, int family, int port) {
    Transfer t;
    t.sum_path = tmp_.file("sum" + std::to_string(port));
    std::string bind = family == 6 ? "TCP6-LISTEN:" + std::to_string(port) + ",bind=[::1]"
                                   : "TCP4-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1";
    std::string dest = (family == 6 ? "TCP6:[" + overlay6(0) + "]:" : "TCP4:" + overlay4(0) + ":") +
                       std::to_string(port) + ",retry=200,interval=0.05";
    Process::Options r, s;
    t.sender_log = tmp_.file("sender" + std::to_string(port) + ".log");
    if (upload) {
      r.argv = pair_->exec(
          0, {"sh", "-c", "socat -u " + bind + ",reuseaddr - | sha256sum > " + t.sum_path});
      s.argv = pair_->exec(1, {"socat", "-u", "FILE:" + transferFile().path, dest});
      s.stderr_path = t.sender_log;
    } else {
      s.argv = pair_->exec(0, {"socat", "-u", "FILE:" + transferFile().path, bind + ",reuseaddr"});
      s.stderr_path = t.sender_log;
      r.argv = pair_->exec(1, {"sh", "-c", "socat -u " + dest + " - | sha256sum > " + t.sum_path});
    }
    // The forwarder completes the overlay handshake before it connects locally (a reset
    // follows when nothing listens), so the local server must be up before the client starts.
    if (upload) {
      t.receiver = Process::start(r);
    } else {
      t.sender = Process::start(s);
    }
    EXPECT_TRUE(pair_->waitListening(0, port, scaled(20s)))
        << "the local server in our namespace never listened";
    if (upload) {
      t.sender = Process::start(s);
    } else {
      t.receiver = Process::start(r);
    }
    return t;
  }

  std::string finish(Transfer& t) {
    auto rc = t.sender->wait(scaled(120s));
    EXPECT_EQ(rc, std::optional<int>(0)) << readText(t.sender_log);
    EXPECT_EQ(t.receiver->wait(scaled(30s)), std::optional<int>(0));
    return readText(t.sum_path).substr(0, 64);
  }

  bool netstack_ = false;
  TempDir tmp_;
  std::unique_ptr<NetnsPair> pair_;
  std::string if_[2], sock_[2], key_[2], pub_[2];
  std::unique_ptr<Process> ours_;    // wsa-wg, side 0
  std::unique_ptr<WireguardGo> go_;  // side 1
};

TEST_F(WgInteropTest, OurEngineInitiatesAndBothSidesPingOverIPv4AndIPv6) {
  ASSERT_NO_FATAL_FAILURE(setUp(/*initiator=*/0));
  for (int from = 0; from < 2; ++from) {
    for (const auto& to : {overlay4(1 - from), overlay6(1 - from)}) {
      auto r = ping(from, to);
      EXPECT_EQ(r.code, 0) << "ping " << to << ":\n" << r.output;
      EXPECT_NE(r.output.find("3 received"), std::string::npos) << r.output;
    }
  }
  auto c = ours();
  EXPECT_GE(num(c, "initiations_sent"), 1u);
  EXPECT_GE(num(c, "responses_received"), 1u);
  EXPECT_EQ(num(c, "responses_sent"), 0u);
  EXPECT_GE(num(c, "handshakes_completed"), 1u);
  EXPECT_EQ(num(c, "drop_bad_auth"), 0u);
  // `wg show` on the wireguard-go side: a handshake and traffic with our key.
  auto hs = pair_->run(1, {"wg", "show", if_[1], "latest-handshakes"});
  ASSERT_EQ(hs.code, 0) << hs.output;
  EXPECT_NE(hs.output.find(pub_[0]), std::string::npos) << hs.output;
  EXPECT_EQ(hs.output.find("\t0\n"), std::string::npos) << "no handshake: " << hs.output;
  auto g = goGet();
  EXPECT_GT(num(g, "last_handshake_time_sec"), 0u);
  EXPECT_GT(num(g, "rx_bytes"), 0u);
  EXPECT_GT(num(g, "tx_bytes"), 0u);
}

TEST_F(WgInteropTest, OurEngineRespondsToWireguardGo) {
  ASSERT_NO_FATAL_FAILURE(setUp(/*initiator=*/1));
  auto r = ping(1, overlay4(0));
  EXPECT_EQ(r.code, 0) << r.output;
  r = ping(0, overlay6(1));
  EXPECT_EQ(r.code, 0) << r.output;
  auto c = ours();
  EXPECT_EQ(num(c, "initiations_sent"), 0u) << "we have no endpoint: we cannot have initiated";
  EXPECT_GE(num(c, "responses_sent"), 1u);
  EXPECT_GE(num(c, "handshakes_completed"), 1u);
  // We learned wireguard-go's endpoint from its authenticated initiation.
  auto peer = uapi(sock_[0], "get=1");
  EXPECT_EQ(peer["endpoint"], pair_->underlay(1) + ":" + kGoPort);
  EXPECT_GT(num(goGet(), "last_handshake_time_sec"), 0u);
}

TEST_F(WgInteropTest, Transfers100MiBEachWayWithMatchingChecksums) {
  ASSERT_NO_FATAL_FAILURE(setUp(/*initiator=*/0));
  std::string want = transferFile().sha256;
  ASSERT_EQ(want.size(), 64u);
  {
    auto t = startTransfer(/*from=*/0, 4, 5001);  // us → wireguard-go, IPv4
    EXPECT_EQ(finish(t), want);
  }
  {
    auto t = startTransfer(/*from=*/1, 6, 5002);  // wireguard-go → us, IPv6
    EXPECT_EQ(finish(t), want);
  }
  auto g = goGet();
  EXPECT_GE(num(g, "rx_bytes"), kTransferBytes);
  EXPECT_GE(num(g, "tx_bytes"), kTransferBytes);
  auto show = pair_->run(1, {"wg", "show", if_[1], "transfer"});
  EXPECT_NE(show.output.find(pub_[0]), std::string::npos) << show.output;
  auto c = ours();
  EXPECT_EQ(num(c, "drop_bad_auth"), 0u);
  EXPECT_EQ(num(c, "drop_source_not_allowed"), 0u);
  // The same figures as Prometheus metrics, per peer.
  auto m = httpRequest("GET", "http://localhost/metrics", "", {}, scaled(10s),
                       tmp_.file("metrics.sock"));
  ASSERT_EQ(m.status, 200) << m.error;
  EXPECT_NE(m.body.find("wsa_wg_handshakes_total{interface=\"" + if_[0] + "\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_GE(metricValue(m.body, "wsa_wg_peer_bytes_total{interface=\"" + if_[0] + "\",peer=\"" +
                                    pub_[1] + "\",direction=\"rx\"}"),
            static_cast<double>(kTransferBytes))
      << m.body;
  EXPECT_NE(m.body.find("wsa_wg_dropped_total{interface=\"" + if_[0] + "\",reason=\"replay\"}"),
            std::string::npos);
}

TEST_F(WgInteropTest, ForcedRekeyDuringTransfersLosesNothing) {
  ASSERT_NO_FATAL_FAILURE(setUp(/*initiator=*/0));
  // Three copies each way (300 MiB): 100 MiB can end, on a fast run beside other tests, before
  // both forced handshakes are through.
  const std::string& f = transferFile().path;
  std::string want =
      run({"sh", "-c", "cat " + f + " " + f + " " + f + " | sha256sum"}, 60s).output.substr(0, 64);
  ASSERT_EQ(want.size(), 64u);
  // Both directions at once, so both keypairs' directions carry data across the rekey.
  auto up = startTransfer(0, 4, 5003, 3);
  auto down = startTransfer(1, 6, 5004, 3);
  // Wait until data is flowing both ways, then force new handshakes (SIGUSR1 on wsa-wg).
  ASSERT_TRUE(waitUntil(
      [&] {
        auto g = goGet();
        return num(g, "rx_bytes") > (8u << 20) && num(g, "tx_bytes") > (8u << 20);
      },
      scaled(60s)));
  uint64_t before = num(ours(), "handshakes_completed");
  ASSERT_GE(before, 1u);
  int rekeys_during = 0;
  for (int i = 0; i < 2; ++i) {
    uint64_t at = num(ours(), "handshakes_completed");
    ours_->signal(SIGUSR1);
    ASSERT_TRUE(waitUntil([&] { return num(ours(), "handshakes_completed") > at; }, scaled(10s)))
        << "the forced handshake did not complete";
    if (up.sender->running() && down.sender->running()) ++rekeys_during;
  }
  EXPECT_GE(rekeys_during, 1) << "the transfers ended before a rekey completed: the test proved "
                                 "nothing (make the transfer larger)";
  EXPECT_EQ(finish(up), want);
  EXPECT_EQ(finish(down), want);
  auto c = ours();
  EXPECT_GE(num(c, "handshakes_completed"), before + 2);
  EXPECT_GE(num(c, "rekeys"), 2u);
  EXPECT_EQ(num(c, "drop_bad_auth"), 0u);
  EXPECT_EQ(num(c, "drop_unknown_index"), 0u) << "data for a keypair we had already dropped";
}

TEST_F(WgInteropTest, WrongPeerKeyOnWireguardGoNeverCompletesOurHandshake) {
  ASSERT_NO_FATAL_FAILURE(startBoth());
  std::string stranger = strangerWgKey();
  ASSERT_NO_FATAL_FAILURE(configure(1, false, stranger));  // wireguard-go expects someone else
  ASSERT_NO_FATAL_FAILURE(configure(0, true));
  auto r = pair_->run(0, {"ping", "-c", "2", "-i", "0.3", "-W", "1", overlay4(1)}, scaled(10s));
  EXPECT_NE(r.code, 0) << r.output;
  // The engine initiates again only after REKEY_TIMEOUT (5 s) without an answer: by its second
  // initiation, any response wireguard-go sent to the first would have arrived.
  EXPECT_TRUE(waitUntil([&] { return num(ours(), "initiations_sent") >= 2; }, scaled(15s)));
  auto c = ours();
  EXPECT_EQ(num(c, "responses_received"), 0u);
  EXPECT_EQ(num(c, "handshakes_completed"), 0u);
  EXPECT_EQ(num(c, "sessions"), 0u);
  EXPECT_EQ(num(goGet(), "last_handshake_time_sec"), 0u);
}

TEST_F(WgInteropTest, WrongPeerKeyOnOurSideRejectsWireguardGosInitiations) {
  ASSERT_NO_FATAL_FAILURE(startBoth());
  std::string stranger = strangerWgKey();
  ASSERT_NO_FATAL_FAILURE(configure(0, false, stranger));  // we expect someone else
  ASSERT_NO_FATAL_FAILURE(configure(1, true));
  auto r = pair_->run(1, {"ping", "-c", "2", "-i", "0.3", "-W", "1", overlay4(0)}, scaled(10s));
  EXPECT_NE(r.code, 0) << r.output;
  ASSERT_TRUE(waitUntil([&] { return num(ours(), "drop_bad_handshake") >= 1; }, scaled(10s)))
      << "wireguard-go's initiation never reached us";
  auto c = ours();
  EXPECT_EQ(num(c, "responses_sent"), 0u);
  EXPECT_EQ(num(c, "handshakes_completed"), 0u);
  EXPECT_EQ(num(goGet(), "last_handshake_time_sec"), 0u);
}

TEST_F(WgInteropTest, UserspaceStackAnswersPingAndForwardsTcpToTheLoopback) {
  ASSERT_NO_FATAL_FAILURE(startBoth(/*netstack=*/true));
  ASSERT_NO_FATAL_FAILURE(configure(0, true));
  ASSERT_NO_FATAL_FAILURE(configure(1, true));
  // lwIP answers pings on our overlay addresses; there is no interface on our side.
  for (const auto& to : {overlay4(0), overlay6(0)}) {
    auto r = ping(1, to);
    EXPECT_EQ(r.code, 0) << "ping " << to << ":\n" << r.output;
  }
  EXPECT_NE(pair_->run(0, {"ip", "link", "show", if_[0]}).code, 0) << "no TUN in netstack mode";
  std::string want = transferFile().sha256;
  {
    auto t = startForwarded(/*upload=*/true, 4, 5011);  // wireguard-go → us → 127.0.0.1
    EXPECT_EQ(finish(t), want);
  }
  {
    auto t = startForwarded(/*upload=*/false, 6, 5012);  // [::1] → us → wireguard-go
    EXPECT_EQ(finish(t), want);
  }
  // A port nobody listens on: the connection is refused (the SYN gets a reset).
  auto c =
      pair_->run(1, {"curl", "-sS", "-m", "10", "http://" + overlay4(0) + ":5999/"}, scaled(20s));
  EXPECT_EQ(c.code, 7) << "curl: 7 = could not connect (refused), 56 would be a reset: "
                       << c.output;
  auto g = goGet();
  EXPECT_GE(num(g, "rx_bytes"), kTransferBytes);
  EXPECT_GE(num(g, "tx_bytes"), kTransferBytes);
  EXPECT_EQ(num(ours(), "drop_bad_auth"), 0u);
}

}  // namespace
}  // namespace wsa::test
