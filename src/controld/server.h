#pragma once
// controld as a whole: config + store + hub + gRPC server + HTTP admin server, with an orderly
// start and shutdown.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "controld/config.h"
#include "controld/stun_server.h"
#include "wsa/common/result.h"

namespace wsa::controld {

struct ControldOptions {
  std::string config_path;
  std::string grpc_listen = "127.0.0.1:7070";
  std::string http_listen = "127.0.0.1:7080";
  std::string db_path;   // default: <data_dir>/controld.db
  std::string data_dir;  // default: see defaultDataDir()
  std::string tls_cert;  // PEM; with tls_key, gRPC is served over TLS
  std::string tls_key;
  std::string ready_file;  // written (JSON) once both listeners are up
  // STUN (UDP) listen addresses; empty: the gRPC listen host's port 3478 (none when gRPC is on
  // a Unix socket); {"none"}: no STUN.
  std::vector<std::string> stun_listen;
  StunLimits stun_limits;
  std::chrono::milliseconds shutdown_grace{5000};

  // Relay tickets (docs/protocol.md): the signing key is <data_dir>/relay-signing.key.
  std::chrono::milliseconds ticket_lifetime{10 * 60 * 1000};
  std::chrono::milliseconds ticket_sweep_interval{30 * 1000};

  // --relay-only: serve Overlay.Relay alone (tickets signed by one of `relay_trusted_keys`,
  // base64 Ed25519 public keys), STUN, /metrics and /healthz; no database, no config needed.
  bool relay_only = false;
  std::vector<std::string> relay_trusted_keys;
  size_t max_relay_streams = 4096;
};

// The relay signing key's path in `data_dir`.
std::string relaySigningKeyPath(const std::string& data_dir);
// Loads (or creates) the relay signing key in `data_dir` and returns its public key (base64).
Result<std::string> relaySigningPublicKey(const std::string& data_dir);
// A relay-only node's config file: {"relay_trusted_keys": ["<base64>", ...]}.
Result<std::vector<std::string>> loadRelayOnlyConfig(const std::string& path);

std::string defaultDataDir();

class Controld {
 public:
  static Result<std::unique_ptr<Controld>> create(ControldOptions options, Config config);
  ~Controld();
  // Blocks serving until SIGTERM or SIGINT, then shuts down gracefully. Returns the exit code.
  int run();

  class Impl;

 private:
  explicit Controld(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsa::controld
