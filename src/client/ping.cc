#include <cstdio>
#include <iostream>

#include "client/commands.h"
#include "client/session.h"
#include "wsa/overlay/engine.h"
#include "wsa/overlay/peer_paths.h"

namespace wsa::client {

namespace {

// `wsa ping`: path probes to the agent on its current path, one per interval, each answer
// saying the path it took and the round trip — and when the path changed since the last one.
class Ping final : public Command {
 public:
  explicit Ping(const PingOptions& options) : options_(options) {}

  void start(Session& session) override {
    session_ = &session;
    const auto* agent = session.agentPeer();
    if (agent == nullptr || !session.engine().paths().has(agent->public_key)) {
      return session.fail("agent \"" + session.agentName() +
                          "\" does not answer path probes (an older agent, or its direct "
                          "connections are disabled and --relay is not auto)");
    }
    key_ = agent->public_key;
    session.reached();
    session.finishOnSignal();
    timer_ = session.clock().createTimer();
    send();
  }
  void stop() override {
    if (timer_) timer_->cancel();
    stopped_ = true;
  }
  int answered() const { return answered_; }

 private:
  void send() {
    if (stopped_) return;
    int seq = ++sent_;
    session_->engine().paths().ping(key_, [this, seq](std::optional<overlay::PeerPaths::Pong> p) {
      if (stopped_) return;
      print(seq, p);
      if (options_.count > 0 && seq >= options_.count) return session_->finish();
      timer_->schedule(options_.interval, [this] { send(); });
    });
  }

  void print(int seq, const std::optional<overlay::PeerPaths::Pong>& p) {
    std::string path = p ? overlay::pathName(p->path) : "";
    std::string endpoint = p && p->path == overlay::Path::kDirect ? p->endpoint.toString() : "";
    bool changed = p && !last_path_.empty() && (path != last_path_ || endpoint != last_endpoint_);
    if (p) {
      ++answered_;
      last_path_ = path;
      last_endpoint_ = endpoint;
    }
    char ms[32];
    std::snprintf(ms, sizeof(ms), "%.2f", p ? p->latency_ms : 0.0);
    if (options_.json) {
      std::string line = "{\"seq\":" + std::to_string(seq);
      if (!p) {
        line +=
            ",\"timeout\":true,\"path\":null,\"endpoint\":null,\"region\":null,"
            "\"latency_ms\":null}";
      } else {
        line += ",\"path\":\"" + path +
                "\",\"endpoint\":" + (endpoint.empty() ? "null" : "\"" + endpoint + "\"") +
                ",\"region\":" + (p->path == overlay::Path::kRelay ? "1" : "null") +
                ",\"latency_ms\":" + ms + (changed ? ",\"path_changed\":true" : "") + "}";
      }
      std::cout << line << "\n" << std::flush;
      return;
    }
    if (!p) {
      std::cout << "timeout waiting for a pong from " << session_->agentName() << " (seq " << seq
                << ")\n"
                << std::flush;
      return;
    }
    if (changed) std::cout << "path changed: now " << path << "\n";
    std::cout << "pong from " << session_->agentName() << " via "
              << (p->path == overlay::Path::kDirect ? "direct " + endpoint : "relay (region 1)")
              << " in " << ms << " ms (seq " << seq << ")\n"
              << std::flush;
  }

  PingOptions options_;
  Session* session_ = nullptr;
  wg::PublicKey key_{};
  std::unique_ptr<Timer> timer_;
  bool stopped_ = false;
  int sent_ = 0;
  int answered_ = 0;
  std::string last_path_, last_endpoint_;
};

}  // namespace

Exit runPing(Session& session, const PingOptions& options) {
  Ping ping(options);
  Exit e = session.run(ping);
  if (e.code == 0 && ping.answered() == 0) return Exit::failure("no pong from the agent");
  return e;
}

}  // namespace wsa::client
