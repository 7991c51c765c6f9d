#pragma once
// Runs the real controld binary for integration tests: writes its config, starts it on
// ephemeral loopback ports (or a unix socket), waits for its ready file, and offers admin API
// helpers.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/util.h"

namespace wsa::test {

std::string controldPath();

// A config with one user ("alice") and one agent ("dev") — tests adjust it before start().
nlohmann::json basicControldConfig();

class ControldHarness {
 public:
  struct Options {
    bool grpc_on_unix_socket = false;
    // --grpc-listen (unless grpc_on_unix_socket) and --http-listen: ephemeral loopback ports by
    // default; a NAT lab test listens on its inet address (198.18.0.1:0).
    std::string grpc_listen = "127.0.0.1:0";
    std::string http_listen = "127.0.0.1:0";
    std::vector<std::string> extra_args;
    std::vector<std::string> wrapper;  // argv prefix (e.g. a program that execs controld)
    // --stun-listen values (an ephemeral loopback port by default, so parallel tests do not
    // share 3478); empty: controld's own default.
    std::vector<std::string> stun_listen = {"127.0.0.1:0"};
  };

  explicit ControldHarness(nlohmann::json config, Options options);
  explicit ControldHarness(nlohmann::json config) : ControldHarness(std::move(config), Options()) {}
  ~ControldHarness();

  // Starts controld and waits (bounded) for it to listen. Throws with the log on failure.
  void start();
  // SIGTERM and wait; returns the exit code.
  int stop();
  void kill();
  bool running() { return process_ && process_->running(); }

  nlohmann::json& config() { return config_; }
  const std::string& dataDir() const { return data_dir_; }
  // gRPC target for grpc::CreateChannel ("127.0.0.1:port" or "unix:/path").
  const std::string& grpcTarget() const { return grpc_; }
  // Control URL form ("http://127.0.0.1:port" or "unix:/path").
  std::string controlUrl() const;
  const std::string& httpAddress() const { return http_; }
  // The STUN listeners' bound addresses, from the ready file ("127.0.0.1:41234").
  const std::vector<std::string>& stunAddresses() const { return stun_; }
  std::string log() const { return readText(log_path_); }

  std::string adminToken() const { return config_["admin_token"]; }
  std::string agentToken(size_t i = 0) const { return config_["agents"][i]["token"]; }
  std::string userToken(size_t i = 0) const { return config_["users"][i]["token"]; }

  // GET an admin API path (with the admin token); returns parsed JSON, throws on non-200.
  nlohmann::json adminGet(const std::string& path) const;
  nlohmann::json agentView(const std::string& name = "dev") const {
    return adminGet("/api/v1/agents/" + name);
  }

 private:
  TempDir dir_;
  nlohmann::json config_;
  Options options_;
  std::string data_dir_;
  std::string log_path_;
  std::string grpc_;
  std::string http_;
  std::vector<std::string> stun_;
  std::unique_ptr<Process> process_;
};

}  // namespace wsa::test
