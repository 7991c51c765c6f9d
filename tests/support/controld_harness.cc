#include "support/controld_harness.h"

#include <signal.h>

#include <stdexcept>

#include "support/http_client.h"

namespace wsa::test {

std::string controldPath() {
  return WSA_CONTROLD_PATH;
}

nlohmann::json basicControldConfig() {
  return {
      {"admin_token", randomHex()},
      {"users", nlohmann::json::array({{{"name", "alice"}, {"token", randomHex()}},
                                       {{"name", "mallory"}, {"token", randomHex()}}})},
      {"agents", nlohmann::json::array({{{"name", "dev"},
                                         {"token", randomHex()},
                                         {"allowed_users", nlohmann::json::array({"alice"})},
                                         {"manifest", nlohmann::json::object()}}})},
  };
}

ControldHarness::ControldHarness(nlohmann::json config, Options options)
    : config_(std::move(config)), options_(std::move(options)) {
  data_dir_ = dir_.file("data");
  log_path_ = dir_.file("controld.log");
}

ControldHarness::~ControldHarness() {
  if (process_) process_->kill();
}

std::string ControldHarness::controlUrl() const {
  if (grpc_.rfind("unix:", 0) == 0) return grpc_;
  return "http://" + grpc_;
}

void ControldHarness::start() {
  writeText(dir_.file("controld.json"), config_.dump(2));
  std::string ready = dir_.file("ready.json");
  ::unlink(ready.c_str());
  Process::Options o;
  o.argv = {controldPath(),
            "--config",
            dir_.file("controld.json"),
            "--data-dir",
            data_dir_,
            "--grpc-listen",
            options_.grpc_on_unix_socket ? "unix:" + dir_.file("grpc.sock") : options_.grpc_listen,
            "--http-listen",
            options_.http_listen,
            "--ready-file",
            ready,
            "--log-level",
            "debug"};
  for (const auto& a : options_.stun_listen) {
    o.argv.push_back("--stun-listen");
    o.argv.push_back(a);
  }
  for (const auto& a : options_.extra_args) o.argv.push_back(a);
  o.argv.insert(o.argv.begin(), options_.wrapper.begin(), options_.wrapper.end());
  o.stdout_path = log_path_;
  o.stderr_path = log_path_;
  process_ = Process::start(o);
  if (!waitForReadyFile(*process_, ready, std::chrono::milliseconds(20000))) {
    throw std::runtime_error("controld did not start; log:\n" + log());
  }
  auto j = nlohmann::json::parse(readText(ready));
  grpc_ = j["grpc"];
  http_ = j["http"];
  stun_.clear();
  if (j.contains("stun")) {
    for (const auto& a : j["stun"]) stun_.push_back(a);
  }
}

int ControldHarness::stop() {
  if (!process_) return -1;
  process_->signal(SIGTERM);
  auto code = process_->wait(scaled(std::chrono::milliseconds(15000)));
  if (!code) {
    process_->kill();
    return -1;
  }
  return *code;
}

void ControldHarness::kill() {
  if (process_) process_->kill();
}

nlohmann::json ControldHarness::adminGet(const std::string& path) const {
  auto r =
      httpRequest("GET", "http://" + http_ + path, "", {"Authorization: Bearer " + adminToken()});
  if (r.status != 200) {
    throw std::runtime_error("GET " + path + " -> " + std::to_string(r.status) + " " + r.error +
                             " " + r.body);
  }
  return nlohmann::json::parse(r.body);
}

}  // namespace wsa::test
