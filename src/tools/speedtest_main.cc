// wsa-speedtest: runs a speed test against an agent's speed test service (its port 3 on the
// overlay, or --speedtest-listen) and prints the rate per second.

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "wsa/common/cli_parse.h"
#include "wsa/common/time.h"
#include "wsa/net/address.h"
#include "wsa/speedtest/speedtest.h"
#include "wsa/version.h"

namespace {

// A connected stream socket to "host:port" or "unix:/path", or -1 with `err` set.
int dial(const std::string& address, std::string* err) {
  auto a = wsa::net::parseListenAddress(address);
  if (!a) {
    *err = a.error();
    return -1;
  }
  if (a->is_unix) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, a->path.c_str(), sizeof(sa.sun_path) - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      *err = a->path + ": " + std::strerror(errno);
      ::close(fd);
      return -1;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string host = a->host.empty() ? "localhost" : a->host;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(a->port).c_str(), &hints, &res);
  if (rc != 0) {
    *err = host + ": " + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* p = res; p != nullptr; p = p->ai_next) {
    fd = ::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, p->ai_addr, p->ai_addrlen) == 0) break;
    *err = address + ": " + std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsa-speedtest " WSA_VERSION " — measure throughput to a workspace agent"};
  std::string address, direction = "download", duration = "5s";
  bool json = false;
  app.add_option("address", address, "The agent's speed test address: host:port or unix:/path")
      ->required();
  app.add_option("-d,--direction", direction, "download (agent → you) or upload")
      ->capture_default_str();
  app.add_option("-t,--time", duration, "How long to measure (1s to 30s)")->capture_default_str();
  app.add_flag("--json", json, "Print the results as JSON");
  WSA_CLI_PARSE(app, argc, argv);

  wsa::speedtest::Config cfg;
  if (direction == "download") {
    cfg.direction = wsa::speedtest::Direction::kDownload;
  } else if (direction == "upload") {
    cfg.direction = wsa::speedtest::Direction::kUpload;
  } else {
    std::cerr << "wsa-speedtest: --direction: want download or upload, not \"" << direction
              << "\"\n";
    return 2;
  }
  auto d = wsa::parseDuration(duration);
  if (!d) {
    std::cerr << "wsa-speedtest: --time: \"" << duration << "\" is not a duration (e.g. 5s)\n";
    return 2;
  }
  cfg.duration = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  std::string err;
  int fd = dial(address, &err);
  if (fd < 0) {
    std::cerr << "wsa-speedtest: " << err << "\n";
    return 1;
  }
  auto r = wsa::speedtest::runClient(fd, cfg);
  ::close(fd);
  if (!r) {
    std::cerr << "wsa-speedtest: " << r.error() << "\n";
    return 1;
  }
  std::cout << (json ? wsa::speedtest::resultsToJson(*r) + "\n"
                     : wsa::speedtest::formatResults(*r));
  return 0;
}
