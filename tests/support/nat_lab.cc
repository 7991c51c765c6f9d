#include "support/nat_lab.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <sstream>

#include "support/netns.h"

namespace wsa::test {

namespace {

using namespace std::chrono_literals;

std::string joined(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

// 198.18.0.2 .. 198.18.0.254: the public addresses a test may add.
bool isFreePublicAddress(const std::string& address) {
  in_addr a{};
  if (::inet_pton(AF_INET, address.c_str(), &a) != 1) return false;
  uint32_t v = ntohl(a.s_addr);
  return (v & 0xffffff00u) == 0xc6120000u && (v & 0xffu) >= 2 && (v & 0xffu) <= 254;
}

}  // namespace

const char* natModeName(NatMode mode) {
  switch (mode) {
    case NatMode::kEasy:
      return "easy";
    case NatMode::kHard:
      return "hard";
    case NatMode::kNone:
      return "none";
  }
  return "?";
}

std::string natLabHelperPath() {
  return WSA_NAT_LAB_HELPER_PATH;
}

std::string natLabUnavailableReason() {
  static const std::string reason = []() -> std::string {
    if (auto why = netnsUnavailableReason(); !why.empty()) return why;
    if (run({"iptables", "--version"}, 10s).code != 0) return "no iptables (package iptables)";
    // What the lab needs of the kernel: NAT with --random-fully, conntrack matches, queues.
    std::string ns = "wsa-nprobe" + std::to_string(::getpid());
    auto add = run({"ip", "netns", "add", ns}, 10s);
    if (add.code != 0) return "cannot create a network namespace: " + add.output;
    std::string why;
    for (const auto& argv :
         std::vector<std::vector<std::string>>{{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o",
                                                "lo", "-j", "MASQUERADE", "--random-fully"},
                                               {"iptables", "-A", "FORWARD", "-m", "conntrack",
                                                "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
                                               {"iptables", "-t", "mangle", "-A", "POSTROUTING",
                                                "-o", "lo", "-j", "NFQUEUE", "--queue-num", "1"}}) {
      std::vector<std::string> full = {"ip", "netns", "exec", ns};
      full.insert(full.end(), argv.begin(), argv.end());
      auto r = run(full, 10s);
      if (r.code != 0) {
        why = joined(argv) + ": " + r.output;
        break;
      }
    }
    run({"ip", "netns", "del", ns}, 10s);
    return why;
  }();
  return reason;
}

NatLab::NatLab(const Options& options) : mode_a_(options.a), mode_b_(options.b) {
  setUp(options);
}

bool NatLab::fail(const std::string& what) {
  error_ = what;
  return false;
}

bool NatLab::step(const std::vector<std::string>& argv) {
  auto r = test::run(argv, scaled(10s));
  if (r.code != 0) return fail(joined(argv) + ": " + r.output);
  return true;
}

void NatLab::setUp(const Options& options) {
  if (options.tag.empty() || options.tag.size() > 3) {
    fail("NatLab: the tag must have 1 to 3 characters");
    return;
  }
  std::string id = std::to_string(::getpid());
  prefix_ = "wn" + id + options.tag;
  dir_ = std::make_unique<TempDir>();
  std::string base = "wsa-n" + id + options.tag + "-";
  for (const char* name : {"inet", "natA", "hostA", "natB", "hostB"}) {
    nodes_.push_back({base + name, ""});
  }
  nodes_[kInet].address = "198.18.0.1";
  nodes_[kNatA].address = "198.18.1.2";
  nodes_[kHostA].address = "198.18.11.2";
  nodes_[kNatB].address = "198.18.2.2";
  nodes_[kHostB].address = "198.18.12.2";
  delays_.resize(nodes_.size());

  for (const auto& n : nodes_) {
    test::run({"ip", "netns", "del", n.ns}, scaled(5s));  // stale, from a reused pid
    if (!step({"ip", "netns", "add", n.ns})) return;
    created_ns_.push_back(n.ns);
    if (!step({"ip", "-n", n.ns, "link", "set", "lo", "up"})) return;
  }
  const std::string& inet = nodes_[kInet].ns;
  if (!step({"ip", "-n", inet, "addr", "add", "198.18.0.1/32", "dev", "lo"}) ||
      !step(execIn(inet, {"sysctl", "-qw", "net.ipv4.ip_forward=1"}))) {
    return;
  }
  for (int side = 0; side < 2; ++side) {
    const std::string s = side == 0 ? "A" : "B";
    const std::string net = side == 0 ? "1" : "2";
    const std::string& nat = nodes_[side == 0 ? kNatA : kNatB].ns;
    const std::string& host = nodes_[side == 0 ? kHostA : kHostB].ns;
    NatMode mode = side == 0 ? mode_a_ : mode_b_;
    std::string inet_if = prefix_ + "i" + s, wan = prefix_ + "w" + s;
    std::string lan = prefix_ + "l" + s, host_if = prefix_ + "h" + s;
    std::string lan_net = "198.18.1" + net;
    bool good =
        // inet <-> router (wan)
        step({"ip", "link", "add", inet_if, "netns", inet, "type", "veth", "peer", "name", wan,
              "netns", nat}) &&
        step({"ip", "-n", inet, "addr", "add", "198.18." + net + ".1/30", "dev", inet_if}) &&
        step({"ip", "-n", inet, "link", "set", inet_if, "up"}) &&
        step({"ip", "-n", nat, "addr", "add", "198.18." + net + ".2/30", "dev", wan}) &&
        step({"ip", "-n", nat, "link", "set", wan, "up"}) &&
        step({"ip", "-n", nat, "route", "add", "default", "via", "198.18." + net + ".1"}) &&
        // router (lan) <-> host
        step({"ip", "link", "add", lan, "netns", nat, "type", "veth", "peer", "name", host_if,
              "netns", host}) &&
        step({"ip", "-n", nat, "addr", "add", lan_net + ".1/24", "dev", lan}) &&
        step({"ip", "-n", nat, "link", "set", lan, "up"}) &&
        step({"ip", "-n", host, "addr", "add", lan_net + ".2/24", "dev", host_if}) &&
        step({"ip", "-n", host, "link", "set", host_if, "up"}) &&
        step({"ip", "-n", host, "route", "add", "default", "via", lan_net + ".1"}) &&
        step(execIn(nat, {"sysctl", "-qw", "net.ipv4.ip_forward=1"}));
    if (!good) return;
    if (mode == NatMode::kNone) {
      if (!step({"ip", "-n", inet, "route", "add", lan_net + ".0/24", "via",
                 "198.18." + net + ".2"})) {
        return;
      }
      continue;
    }
    // The home router's firewall: nothing new comes in from the wan side.
    for (const char* chain : {"INPUT", "FORWARD"}) {
      if (!step(execIn(nat, {"iptables", "-A", chain, "-i", wan, "-m", "conntrack", "--ctstate",
                             "ESTABLISHED,RELATED", "-j", "ACCEPT"})) ||
          !step(execIn(nat, {"iptables", "-A", chain, "-i", wan, "-j", "DROP"}))) {
        return;
      }
    }
    std::vector<std::string> masq = {"iptables", "-t", "nat", "-A",        "POSTROUTING",
                                     "-o",       wan,  "-j",  "MASQUERADE"};
    if (mode == NatMode::kHard) masq.push_back("--random-fully");
    if (!step(execIn(nat, masq))) return;
  }
}

NatLab::~NatLab() {
  for (size_t i = 0; i < delays_.size(); ++i) removeDelay(static_cast<Node>(i));
  // Deleting a namespace removes its interfaces, veth peers and firewall rules with it.
  for (auto it = created_ns_.rbegin(); it != created_ns_.rend(); ++it) {
    test::run({"ip", "netns", "del", *it}, scaled(10s));
  }
}

NatMode NatLab::mode(Node node) const {
  if (node == kNatA || node == kHostA) return mode_a_;
  if (node == kNatB || node == kHostB) return mode_b_;
  return NatMode::kNone;
}

const std::string& NatLab::ns(Node node) const {
  static const std::string none;
  return validNode(node) ? nodes_[static_cast<size_t>(node)].ns : none;
}

std::string NatLab::address(Node node) const {
  return validNode(node) ? nodes_[static_cast<size_t>(node)].address : "";
}

std::string NatLab::ifname(Node node, const std::string& what) const {
  return (prefix_ + "x" + std::to_string(node) + what).substr(0, 15);
}

std::vector<std::string> NatLab::execIn(const std::string& ns,
                                        std::vector<std::string> argv) const {
  std::vector<std::string> out = {"ip", "netns", "exec", ns};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::vector<std::string> NatLab::exec(Node node, std::vector<std::string> argv) const {
  return execIn(ns(node), std::move(argv));
}

RunResult NatLab::run(Node node, const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout, const std::string& stdin_data) const {
  if (!validNode(node)) return {-1, "NatLab: no node " + std::to_string(node)};
  return test::run(exec(node, argv), timeout, {}, stdin_data);
}

std::unique_ptr<Process> NatLab::start(Node node, Process::Options options) const {
  if (!validNode(node)) return nullptr;
  options.argv = exec(node, std::move(options.argv));
  return Process::start(options);
}

bool NatLab::addPublicAddress(const std::string& address) {
  if (!isFreePublicAddress(address))
    return fail("NatLab: " + address + " is not in 198.18.0.2-254");
  if (std::find(public_addresses_.begin(), public_addresses_.end(), address) !=
      public_addresses_.end()) {
    return fail("NatLab: " + address + " is already in use");
  }
  if (!step({"ip", "-n", ns(kInet), "addr", "add", address + "/32", "dev", "lo"})) return false;
  public_addresses_.push_back(address);
  return true;
}

NatLab::Node NatLab::addServer(const std::string& address) {
  if (!isFreePublicAddress(address)) {
    fail("NatLab: " + address + " is not in 198.18.0.2-254");
    return -1;
  }
  if (std::find(public_addresses_.begin(), public_addresses_.end(), address) !=
      public_addresses_.end()) {
    fail("NatLab: " + address + " is already in use");
    return -1;
  }
  int k = static_cast<int>(nodes_.size()) - 5;
  if (k >= 60) {
    fail("NatLab: at most 60 servers");
    return -1;
  }
  std::string name = ns(kInet);
  name = name.substr(0, name.size() - 4) + "s" + std::to_string(k);  // "...-inet" -> "...-sK"
  const std::string& inet = ns(kInet);
  std::string inet_if = prefix_ + "s" + std::to_string(k);
  std::string server_if = prefix_ + "S" + std::to_string(k);
  std::string inet_side = "198.18.3." + std::to_string(4 * k + 1);
  std::string server_side = "198.18.3." + std::to_string(4 * k + 2);
  test::run({"ip", "netns", "del", name}, scaled(5s));
  if (!step({"ip", "netns", "add", name})) return -1;
  created_ns_.push_back(name);
  bool good =
      step({"ip", "-n", name, "link", "set", "lo", "up"}) &&
      step({"ip", "-n", name, "addr", "add", address + "/32", "dev", "lo"}) &&
      step({"ip", "link", "add", inet_if, "netns", inet, "type", "veth", "peer", "name", server_if,
            "netns", name}) &&
      step({"ip", "-n", inet, "addr", "add", inet_side + "/30", "dev", inet_if}) &&
      step({"ip", "-n", inet, "link", "set", inet_if, "up"}) &&
      step({"ip", "-n", name, "addr", "add", server_side + "/30", "dev", server_if}) &&
      step({"ip", "-n", name, "link", "set", server_if, "up"}) &&
      // Everything the server sends comes from its public address, bound or not.
      step({"ip", "-n", name, "route", "add", "default", "via", inet_side, "src", address}) &&
      step({"ip", "-n", inet, "route", "add", address + "/32", "via", server_side});
  if (!good) return -1;
  public_addresses_.push_back(address);
  nodes_.push_back({name, address});
  delays_.resize(nodes_.size());
  return static_cast<Node>(nodes_.size() - 1);
}

bool NatLab::blockUdpBetweenNats(bool on) {
  if (on == udp_blocked_) return true;
  const std::string& inet = ns(kInet);
  for (const auto& [in, out] : {std::pair{"iA", "iB"}, std::pair{"iB", "iA"}}) {
    if (!step(execIn(inet, {"iptables", on ? "-I" : "-D", "FORWARD", "-i", prefix_ + in, "-o",
                            prefix_ + out, "-p", "udp", "-j", "DROP"}))) {
      return false;
    }
  }
  udp_blocked_ = on;
  return true;
}

void NatLab::removeDelay(Node node) {
  if (!validNode(node)) return;
  auto& d = delays_[static_cast<size_t>(node)];
  if (!d) return;
  std::vector<std::string> del = {"iptables", "-t", "mangle", "-D"};
  del.insert(del.end(), d->rule.begin(), d->rule.end());
  test::run(execIn(d->ns, del), scaled(10s));
  if (d->proc) {
    d->proc->signal(SIGTERM);
    if (!d->proc->wait(scaled(5s))) d->proc->kill();
  }
  d.reset();
}

bool NatLab::setDelay(Node node, std::chrono::milliseconds delay, uint32_t queue_limit) {
  std::string where, out_if;
  if (node == kHostA || node == kHostB) {
    where = ns(node == kHostA ? kNatA : kNatB);
    out_if = prefix_ + (node == kHostA ? "lA" : "lB");
  } else if (node == kNatA || node == kNatB) {
    where = ns(kInet);
    out_if = prefix_ + (node == kNatA ? "iA" : "iB");
  } else if (node > kHostB && validNode(node)) {
    where = ns(kInet);
    out_if = prefix_ + "s" + std::to_string(node - 5);
  } else {
    return fail("NatLab::setDelay: not a host, NAT or server: " + std::to_string(node));
  }
  removeDelay(node);
  if (delay.count() <= 0) return true;
  if (queue_limit == 0) return fail("NatLab::setDelay: queue_limit must be positive");

  auto d = std::make_unique<Delay>();
  d->ns = where;
  d->queue = next_queue_++;
  std::string ready = dir_->file("delay" + std::to_string(d->queue) + ".ready");
  Process::Options o;
  o.argv = execIn(where, {natLabHelperPath(), "delay", "--queue", std::to_string(d->queue),
                          "--delay-ms", std::to_string(delay.count()), "--max-queue",
                          std::to_string(queue_limit), "--ready", ready});
  o.stdout_path = o.stderr_path = dir_->file("delay" + std::to_string(d->queue) + ".log");
  d->proc = Process::start(o);
  if (!waitForReadyFile(*d->proc, ready, scaled(5s))) {
    return fail("NatLab::setDelay: the delay helper did not start: " + readText(o.stderr_path));
  }
  d->rule = {"POSTROUTING", "-o", out_if, "-j", "NFQUEUE", "--queue-num", std::to_string(d->queue)};
  std::vector<std::string> add = {"iptables", "-t", "mangle", "-A"};
  add.insert(add.end(), d->rule.begin(), d->rule.end());
  delays_[static_cast<size_t>(node)] = std::move(d);
  return step(execIn(where, add));
}

NatLab::DelayStats NatLab::delayStats(Node node) const {
  DelayStats stats;
  if (!validNode(node) || !delays_[static_cast<size_t>(node)]) return stats;
  const auto& d = *delays_[static_cast<size_t>(node)];
  // queue_number peer_portid queue_total copy_mode copy_range queue_dropped user_dropped
  // id_sequence 1
  auto r = test::run(execIn(d.ns, {"cat", "/proc/net/netfilter/nfnetlink_queue"}), scaled(10s));
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    uint64_t v[8] = {};
    for (auto& x : v) f >> x;
    if (!f || v[0] != static_cast<uint64_t>(d.queue)) continue;
    stats.packets = v[7];
    stats.dropped = v[5] + v[6];
  }
  return stats;
}

}  // namespace wsa::test
