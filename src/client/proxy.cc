#include "client/commands.h"
#include "client/session.h"
#include "client/stdio_stream.h"
#include "wsa/net/splice.h"

namespace wsa::client {

namespace {

class Proxy final : public Command {
 public:
  explicit Proxy(uint16_t port) : port_(port) {}
  void start(Session& session) override {
    session.connectTo(port_, [&session](net::ByteStreamPtr s) {
      net::splice(std::move(s), makeStdioStream(session.io()),
                  [&session](const net::SpliceResult&) { session.finish(); });
    });
  }

 private:
  uint16_t port_;
};

}  // namespace

Exit runProxy(Session& session, uint16_t port) {
  Proxy proxy(port);
  return session.run(proxy);
}

}  // namespace wsa::client
