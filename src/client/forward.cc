#include <iostream>
#include <vector>

#include "client/commands.h"
#include "client/session.h"
#include "wsa/common/logging.h"
#include "wsa/net/listener.h"
#include "wsa/net/splice.h"

namespace wsa::client {

namespace {

// Every local connection gets its own overlay connection.
class Forward final : public Command {
 public:
  explicit Forward(const ForwardSpec& spec) : spec_(spec), log_(logging::get("wsa")) {}

  void start(Session& session) override {
    session.reached();  // the listener is what the user waits for
    auto bound = net::listenStreams(
        session.io(), spec_.listen, "port forward",
        [this, &session](net::ByteStreamPtr local) { serve(session, std::move(local)); },
        listeners_);
    if (!bound) return session.fail("forward: " + bound.error());
    std::cerr << "wsa: forwarding " << *bound << " to " << session.agentName() << " port "
              << spec_.remote_port << " (Ctrl-C stops)" << std::endl;
    session.finishOnSignal();
  }
  void stop() override { listeners_.clear(); }

 private:
  void serve(Session& session, net::ByteStreamPtr local) {
    auto holder = std::make_shared<net::ByteStreamPtr>(std::move(local));
    session.dial(spec_.remote_port, [this, &session, holder](Result<net::ByteStreamPtr> s) {
      if (!s) {
        log_->warn("{} port {}: {}", session.agentName(), spec_.remote_port, s.error());
        (*holder)->abort();
        return;
      }
      net::splice(std::move(*s), std::move(*holder), nullptr);
    });
  }

  ForwardSpec spec_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
};

}  // namespace

Exit runForward(Session& session, const ForwardSpec& spec) {
  Forward forward(spec);
  return session.run(forward);
}

}  // namespace wsa::client
