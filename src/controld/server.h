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
};

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
