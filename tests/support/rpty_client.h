#pragma once
// A reconnecting PTY client for tests: speaks the wire protocol over a loopback TCP socket and
// keeps everything it received, optionally fed into a terminal model (the "client's screen").

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace wsa::term {
class ScreenModel;
}

namespace wsa::test {

class RptyClient {
 public:
  struct Options {
    int rows = 24;
    int cols = 80;
    int receive_buffer = 0;  // SO_RCVBUF before connecting (0: the kernel's default)
    bool screen = true;      // feed a screen model with what arrives
  };
  // Connects to 127.0.0.1:port; rows/cols also size the client's own screen model.
  RptyClient(int port, int rows = 24, int cols = 80)
      : RptyClient(port, Options{rows, cols, 0, true}) {}
  RptyClient(int port, Options options);
  ~RptyClient();
  RptyClient(const RptyClient&) = delete;
  RptyClient& operator=(const RptyClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  // The init frame: 2-byte little-endian length and JSON.
  void init(const std::string& id, const std::string& command = "");
  void sendRaw(const std::string& bytes);
  void input(const std::string& data);
  void resize(int rows, int cols);
  void close();
  // Closes our sending side only (the agent sees EOF; we can still read).
  void halfClose();
  // Reads whatever arrives within `timeout`; false if nothing did.
  bool pump(std::chrono::milliseconds timeout) { return readOnce(timeout); }

  // Reads until `done(output)` holds, EOF, or the deadline. Returns whether `done` held.
  bool waitFor(const std::function<bool(const std::string&)>& done,
               std::chrono::milliseconds timeout);
  bool waitForText(const std::string& needle, std::chrono::milliseconds timeout);
  // Waits for the agent to close the connection.
  bool waitForEof(std::chrono::milliseconds timeout);
  bool eof() const { return eof_; }
  const std::string& output() const { return out_; }
  // The client's terminal, fed with everything received.
  term::ScreenModel& screen() { return *screen_; }

 private:
  bool readOnce(std::chrono::milliseconds timeout);
  int fd_ = -1;
  int rows_, cols_;
  bool feed_screen_;
  std::string out_;
  bool eof_ = false;
  std::unique_ptr<term::ScreenModel> screen_;
};

}  // namespace wsa::test
