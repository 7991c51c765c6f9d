#pragma once
// A small internet in network namespaces for NAT traversal tests: a public "inet" namespace and
// two hosts, each behind its own home-router NAT, plus any number of public servers.
//
//   inet    198.18.0.1 on lo (public servers: control server, STUN, relay); more public
//           addresses with addPublicAddress. Routes between everything below.
//   natA    router: wan 198.18.1.2/30 (inet side 198.18.1.1), lan 198.18.11.1/24
//   hostA   198.18.11.2/24, default route via natA
//   natB    router: wan 198.18.2.2/30 (inet side 198.18.2.1), lan 198.18.12.1/24
//   hostB   198.18.12.2/24, default route via natB
//   server  (addServer) its own namespace with a public 198.18.0.x on lo, linked to inet by
//           198.18.3.(4k+1 | 4k+2)/30
//
// Modes: kEasy = MASQUERADE (Linux's endpoint-independent mapping: hole punching works),
// kHard = MASQUERADE --random-fully (a new external port per destination: it does not),
// kNone = routed, no NAT and no firewall (the host's own address is public). A NAT router
// also firewalls its wan side as home routers do: in filter INPUT and FORWARD, whatever is not
// ESTABLISHED/RELATED and comes in on the wan is dropped. Dropping in the filter table (not
// only having no NAT mapping) matters: an unsolicited packet delivered to a closed port would
// leave a conntrack entry for 30 s that clashes with a later outbound mapping of that port.
//
// Delays: this kernel has no netem qdisc, so setDelay holds packets in userspace through a
// netfilter queue (wsa-nat-lab-helper delay), in the namespace on the way to the node.
//
// Names embed the test's pid and a tag, so parallel tests (and several labs in one test) never
// collide; everything is deleted on destruction, also after a failed setup. Addresses are in
// 198.18.0.0/15 only; nothing leaves the namespaces. Needs root, iproute2 and iptables.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/util.h"

namespace wsa::test {

enum class NatMode { kEasy, kHard, kNone };
const char* natModeName(NatMode mode);

// Why this process cannot build a NAT lab (not root, no namespaces, no iptables, no NAT in the
// kernel), or empty when it can. Probed once per process. Use:
//   if (auto why = natLabUnavailableReason(); !why.empty()) GTEST_SKIP() << why;
std::string natLabUnavailableReason();

// The path of the helper binary (reflect, punch, echo, exchange, burst, count, delay;
// see nat_lab_helper.cc).
std::string natLabHelperPath();

class NatLab {
 public:
  using Node = int;
  static constexpr Node kInet = 0;
  static constexpr Node kNatA = 1;
  static constexpr Node kHostA = 2;
  static constexpr Node kNatB = 3;
  static constexpr Node kHostB = 4;

  struct Options {
    NatMode a = NatMode::kEasy;
    NatMode b = NatMode::kEasy;
    std::string tag = "n";  // at most 3 characters: tells the labs of one process apart
  };

  explicit NatLab(const Options& options);
  ~NatLab();
  NatLab(const NatLab&) = delete;
  NatLab& operator=(const NatLab&) = delete;

  // Nothing has failed so far (setup and every later call); error() says what failed last.
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  NatMode mode(Node nat_or_host) const;
  // The namespace of a node (for `ip netns exec`).
  const std::string& ns(Node node) const;
  // The node's own address: inet 198.18.0.1, a NAT's wan address (198.18.1.2, 198.18.2.2),
  // a host's lan address (198.18.11.2, 198.18.12.2), a server's public address.
  std::string address(Node node) const;
  // An interface name unique on the machine for the node (at most 15 characters): for
  // interfaces a test creates, e.g. wireguard-go's (its socket directory is shared).
  std::string ifname(Node node, const std::string& what) const;

  // The argv prefix that runs a command in the node's namespace (like NetnsPair::exec).
  std::vector<std::string> exec(Node node, std::vector<std::string> argv) const;
  // Runs a command in the node's namespace to completion (bounded).
  RunResult run(Node node, const std::vector<std::string>& argv,
                std::chrono::milliseconds timeout = std::chrono::seconds(10),
                const std::string& stdin_data = "") const;
  // Starts a long-running process in the node's namespace (options.argv gets the prefix).
  std::unique_ptr<Process> start(Node node, Process::Options options) const;

  // Adds a public address (198.18.0.2 .. 198.18.0.254) to inet's lo, for a second server
  // there (e.g. a second STUN port's address). False (error() set) if it fails.
  bool addPublicAddress(const std::string& address);
  // A public server in its own namespace, `address` (198.18.0.2 .. 198.18.0.254, unused) on its
  // lo and as the source of everything it sends; its link to inet can be delayed with
  // setDelay. Returns the node, or -1 (error() set). At most 60 servers.
  Node addServer(const std::string& address);

  // Drops UDP between the two NATs' wan sides (both directions) in inet, or lifts the drop.
  // Other traffic (to inet and servers, TCP between the hosts) is untouched.
  bool blockUdpBetweenNats(bool on);
  bool udpBlocked() const { return udp_blocked_; }

  // Delays every packet on its way to `node` by `delay` (so round trips to it grow by that):
  // a host (in its NAT, on the lan link), a NAT (in inet, on its wan link: everything behind
  // it), or a server (in inet, on its link). A zero delay removes it; setting it again
  // replaces it. At most `queue_limit` packets are held at once; beyond, they are dropped
  // (counted in delayStats). Not for kInet.
  bool setDelay(Node node, std::chrono::milliseconds delay, uint32_t queue_limit = 1000);
  struct DelayStats {
    uint64_t packets = 0;  // queued for delay so far
    uint64_t dropped = 0;  // dropped because queue_limit packets were held
  };
  // The kernel's counters for the node's current delay (zeros when there is none).
  DelayStats delayStats(Node node) const;

 private:
  struct NodeInfo {
    std::string ns;
    std::string address;
  };
  struct Delay {
    std::unique_ptr<Process> proc;
    std::string ns;
    std::vector<std::string> rule;  // iptables arguments after -A/-D
    int queue = 0;
  };

  bool step(const std::vector<std::string>& argv);
  std::vector<std::string> execIn(const std::string& ns, std::vector<std::string> argv) const;
  bool fail(const std::string& what);
  bool validNode(Node node) const { return node >= 0 && node < static_cast<Node>(nodes_.size()); }
  void removeDelay(Node node);
  void setUp(const Options& options);

  std::string prefix_;  // interface name prefix: "wn" + pid + tag
  NatMode mode_a_ = NatMode::kEasy;
  NatMode mode_b_ = NatMode::kEasy;
  std::vector<NodeInfo> nodes_;
  std::vector<std::string> created_ns_;
  std::vector<std::string> public_addresses_;
  std::vector<std::unique_ptr<Delay>> delays_;  // by node; null when none
  std::unique_ptr<TempDir> dir_;                // ready files of the delay helpers
  int next_queue_ = 0;
  bool udp_blocked_ = false;
  std::string error_;
};

}  // namespace wsa::test
