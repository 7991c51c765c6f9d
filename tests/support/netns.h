#pragma once
// Network namespaces for tests that need real interfaces (WireGuard peers, TUN devices): two
// namespaces joined by a veth pair, with underlay addresses from 198.18.0.0/15. Names embed
// the test process's pid so parallel tests never collide; everything is deleted on destruction.
// Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace wsa::test {

// Why this process cannot create namespaces, or empty when it can.
std::string netnsUnavailableReason();

class NetnsPair {
 public:
  // `tag` (≤ 3 characters) tells pairs of one process apart.
  explicit NetnsPair(const std::string& tag = "a");
  ~NetnsPair();
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // Namespace names, and the underlay address (no prefix length) of each end.
  const std::string& ns(int side) const { return ns_[side]; }
  std::string underlay(int side) const { return side == 0 ? "198.18.252.1" : "198.18.252.2"; }
  // A name for an interface to create on `side`, unique on the machine (the WireGuard
  // configuration socket directory is shared by all namespaces): at most 15 characters.
  std::string ifname(int side, const std::string& what) const;

  // Runs a command inside the namespace of `side` (bounded).
  RunResult run(int side, const std::vector<std::string>& argv,
                std::chrono::milliseconds timeout = std::chrono::seconds(10),
                const std::string& stdin_data = "") const;
  // The argv prefix that runs a command in the namespace of `side`.
  std::vector<std::string> exec(int side, std::vector<std::string> argv) const;
  // Waits until something listens on TCP `port` in the namespace of `side`.
  bool waitListening(int side, uint16_t port, std::chrono::milliseconds timeout) const;

 private:
  std::string tag_;
  std::string ns_[2];
  std::string error_;
};

// A WireGuard key pair from `wg genkey` / `wg pubkey`: the private key in a 0600 file.
struct WgKeyPair {
  std::string private_path;
  std::string public_key;  // base64
};
WgKeyPair makeWgKeyPair(const std::string& private_path);
// The public key of a fresh key pair nobody holds.
std::string strangerWgKey();

// wireguard-go (-f, verbose log to `log_path`) on a new interface `ifname` in the namespace of
// `side`; on destruction it is stopped (SIGTERM, then SIGKILL) and its socket removed.
class WireguardGo {
 public:
  WireguardGo(const NetnsPair& pair, int side, const std::string& ifname,
              const std::string& log_path);
  ~WireguardGo();
  // Its configuration socket appeared within `timeout`.
  bool waitReady(std::chrono::milliseconds timeout) const;
  const std::string& socketPath() const { return socket_; }
  const std::string& logPath() const { return log_; }

 private:
  std::unique_ptr<Process> proc_;
  std::string socket_;
  std::string log_;
};

}  // namespace wsa::test
