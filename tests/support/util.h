#pragma once
// Small test utilities: temporary directories, waiting on conditions with deadlines, files.

#include <chrono>
#include <functional>
#include <string>

namespace wsa::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Re-evaluates `condition` (every `poll`) until it holds or the deadline passes. Use for state
// that changes outside the test's control (another process); returns whether it held.
bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll = std::chrono::milliseconds(10));

std::string readText(const std::string& path);
std::string_view trimView(std::string_view s);
bool pathExists(const std::string& path);
void writeText(const std::string& path, const std::string& text);
// A random token suitable for configs (32 hex chars).
std::string randomHex(size_t bytes = 16);
// The value of one series ("name" or "name{labels}", exactly as exposed) in Prometheus text
// format; -1 when absent.
double metricValue(const std::string& text, const std::string& series);
// Connects to a unix stream socket, sends `request`, and reads until `terminator` appears in
// the answer, the peer closes, or `timeout` passes. "" when it cannot connect.
std::string unixRoundTrip(const std::string& path, const std::string& request,
                          const std::string& terminator,
                          std::chrono::milliseconds timeout = std::chrono::seconds(5));
// Scales test deadlines for slow builds (sanitizers): WSA_TEST_TIMEOUT_SCALE.
std::chrono::milliseconds scaled(std::chrono::milliseconds d);

}  // namespace wsa::test
