#include "support/netns.h"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include "support/util.h"

namespace wsa::test {

std::string netnsUnavailableReason() {
  // Probed once per process by doing what the tests do: a namespace with a TUN device in it.
  static const std::string reason = []() -> std::string {
    if (::geteuid() != 0) return "needs root to create network namespaces";
    if (!pathExists("/dev/net/tun")) return "no /dev/net/tun";
    std::string ns = "wsa-probe" + std::to_string(::getpid());
    auto add = run({"ip", "netns", "add", ns}, std::chrono::seconds(10));
    if (add.code != 0) return "cannot create a network namespace: " + add.output;
    auto tun = run({"ip", "-n", ns, "tuntap", "add", "dev", "wsaprobe", "mode", "tun"},
                   std::chrono::seconds(10));
    run({"ip", "netns", "del", ns}, std::chrono::seconds(10));
    if (tun.code != 0) return "cannot create a TUN device in a network namespace: " + tun.output;
    return {};
  }();
  return reason;
}

NetnsPair::NetnsPair(const std::string& tag) : tag_(tag) {
  std::string id = std::to_string(::getpid());
  ns_[0] = "wsa-t" + id + tag + "-0";
  ns_[1] = "wsa-t" + id + tag + "-1";
  std::string veth0 = "wv" + id + tag + "0", veth1 = "wv" + id + tag + "1";
  auto step = [&](const std::vector<std::string>& argv) {
    if (!error_.empty()) return;
    auto r = test::run(argv, std::chrono::seconds(10));
    if (r.code != 0) {
      std::string cmd;
      for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
      error_ = cmd + ": " + r.output;
    }
  };
  for (auto& n : ns_) test::run({"ip", "netns", "del", n}, std::chrono::seconds(5));  // stale
  step({"ip", "netns", "add", ns_[0]});
  step({"ip", "netns", "add", ns_[1]});
  step({"ip", "link", "add", veth0, "type", "veth", "peer", "name", veth1});
  step({"ip", "link", "set", veth0, "netns", ns_[0]});
  step({"ip", "link", "set", veth1, "netns", ns_[1]});
  step({"ip", "-n", ns_[0], "addr", "add", underlay(0) + "/24", "dev", veth0});
  step({"ip", "-n", ns_[1], "addr", "add", underlay(1) + "/24", "dev", veth1});
  for (int s = 0; s < 2; ++s) {
    step({"ip", "-n", ns_[s], "link", "set", "lo", "up"});
    step({"ip", "-n", ns_[s], "link", "set", s == 0 ? veth0 : veth1, "up"});
  }
}

NetnsPair::~NetnsPair() {
  // Deleting a namespace removes its interfaces (the veth pair with it).
  for (auto& n : ns_) test::run({"ip", "netns", "del", n}, std::chrono::seconds(10));
}

std::string NetnsPair::ifname(int side, const std::string& what) const {
  std::string name = "w" + std::to_string(::getpid()) + tag_ + what + std::to_string(side);
  return name.substr(0, 15);
}

std::vector<std::string> NetnsPair::exec(int side, std::vector<std::string> argv) const {
  std::vector<std::string> out = {"ip", "netns", "exec", ns_[side]};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

RunResult NetnsPair::run(int side, const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout, const std::string& stdin_data) const {
  return test::run(exec(side, argv), timeout, {}, stdin_data);
}

bool NetnsPair::waitListening(int side, uint16_t port, std::chrono::milliseconds timeout) const {
  return waitUntil(
      [&] {
        return run(side, {"ss", "-Hltn", "sport = :" + std::to_string(port)})
                   .output.find("LISTEN") != std::string::npos;
      },
      timeout, std::chrono::milliseconds(50));
}

WgKeyPair makeWgKeyPair(const std::string& private_path) {
  std::string key = run({"wg", "genkey"}, std::chrono::seconds(5)).output;
  writeText(private_path, key);
  ::chmod(private_path.c_str(), 0600);
  return {private_path,
          run({"wg", "pubkey"}, std::chrono::seconds(5), {}, key).output.substr(0, 44)};
}

std::string strangerWgKey() {
  return run({"wg", "pubkey"}, std::chrono::seconds(5), {},
             run({"wg", "genkey"}, std::chrono::seconds(5)).output)
      .output.substr(0, 44);
}

WireguardGo::WireguardGo(const NetnsPair& pair, int side, const std::string& ifname,
                         const std::string& log_path)
    : socket_("/var/run/wireguard/" + ifname + ".sock"), log_(log_path) {
  ::mkdir("/var/run/wireguard", 0755);
  Process::Options o;
  o.argv = pair.exec(side, {"env", "LOG_LEVEL=verbose", "wireguard-go", "-f", ifname});
  o.stdout_path = o.stderr_path = log_path;
  proc_ = Process::start(o);
}

WireguardGo::~WireguardGo() {
  if (proc_) {
    proc_->signal(SIGTERM);
    if (!proc_->wait(scaled(std::chrono::seconds(5)))) proc_->kill();
  }
  ::unlink(socket_.c_str());
}

bool WireguardGo::waitReady(std::chrono::milliseconds timeout) const {
  return proc_ != nullptr && waitUntil([&] { return pathExists(socket_); }, timeout);
}

}  // namespace wsa::test
