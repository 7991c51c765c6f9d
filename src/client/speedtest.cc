#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <iostream>
#include <thread>

#include "client/commands.h"
#include "client/session.h"
#include "wsa/net/splice.h"

namespace wsa::client {

namespace {

// The speed test client is blocking code: it runs on its own thread against a socket spliced to
// the overlay connection, and hands its results back to the loop.
class Speedtest final : public Command {
 public:
  explicit Speedtest(const SpeedtestOptions& options) : options_(options) {}
  ~Speedtest() override { join(); }

  void start(Session& session) override {
    session.connectTo(kSpeedtestPort, [this, &session](net::ByteStreamPtr s) {
      auto fd = net::spliceToFd(session.io(), std::move(s));
      if (!fd) return session.fail(fd.error());
      thread_ = std::thread([this, &session, fd = *fd] { measure(session, fd); });
    });
  }
  // The overlay connection is gone by now, so the test's socket sees its end.
  void join() override {
    if (thread_.joinable()) thread_.join();
  }

 private:
  void measure(Session& session, int fd) {
    auto r = speedtest::runClient(fd, options_.config);
    ::close(fd);
    asio::post(session.io(), [this, &session, r = std::move(r)] {
      if (!r) return session.fail("speed test: " + r.error());
      std::cout << (options_.json ? speedtest::resultsToJson(*r) + "\n"
                                  : speedtest::formatResults(*r))
                << std::flush;
      session.finish();
    });
  }

  SpeedtestOptions options_;
  std::thread thread_;
};

}  // namespace

Exit runSpeedtest(Session& session, const SpeedtestOptions& options) {
  Speedtest speedtest(options);
  return session.run(speedtest);
}

}  // namespace wsa::client
