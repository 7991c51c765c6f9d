#pragma once
// Helpers for tests that drive the `wsa` client and the OpenSSH client through it: payloads both
// ends can check, the ssh command line with `wsa proxy` as its ProxyCommand, metrics sums, and
// HTTP GETs from inside a NAT lab node (what the test process cannot reach over the network).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/http_client.h"
#include "support/nat_lab.h"

namespace wsa::test {

// `n` bytes of a fixed pseudo-random pattern (a linear congruential generator seeded with
// `seed`, the high byte of each step): the same on every run.
std::string patternBytes(size_t n, uint32_t seed);

// The SHA-256 of `data`, 64 lowercase hex digits (what sha256sum prints first).
std::string sha256Hex(std::string_view data);

// The arguments joined by spaces: a command line for ssh's ProxyCommand (which a shell splits;
// the arguments must need no quoting).
std::string joinArgs(const std::vector<std::string>& argv);

// The OpenSSH client running `remote_command` on `host` through `proxy_command`: batch mode, no
// host key checks or known hosts, errors only.
std::vector<std::string> sshArgv(const std::string& proxy_command,
                                 const std::string& remote_command,
                                 const std::string& host = "someone@dev");

// The sum of every series of the metric family `name` ("name{...} V" and "name V") in Prometheus
// text format; 0 when there is none.
double metricSum(const std::string& text, const std::string& name);

// GET `url` with curl inside the lab node's namespace (bounded: curl --max-time, and the run).
// Headers go to curl in a file, so tokens never appear on a command line. status 0 and `error`
// set when curl failed.
HttpResult labHttpGet(const NatLab& lab, NatLab::Node node, const std::string& url,
                      const std::vector<std::string>& headers = {},
                      std::chrono::seconds max_time = std::chrono::seconds(5));

}  // namespace wsa::test
