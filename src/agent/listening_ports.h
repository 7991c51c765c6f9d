#pragma once
// TCP listeners in the workspace, from /proc/net/tcp and /proc/net/tcp6 (IPv4 and IPv6), with
// the owning process's name found through /proc/<pid>/fd. Blocking: run it off the loop.

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "wsa/common/result.h"

namespace wsa::agent {

struct ListeningPort {
  uint16_t port = 0;
  std::string process_name;  // empty when the owner is not visible (another user's process)
  std::string network = "tcp";
};

struct ProcListener {
  uint16_t port = 0;
  uint64_t inode = 0;
};

// LISTEN entries of a /proc/net/tcp{,6} table. Malformed lines are skipped.
std::vector<ProcListener> parseProcNetTcp(std::string_view table);

// Every listening TCP port (deduplicated by port, sorted), minus ports below `min_port` and
// those in `hidden`. Fails only when neither table can be read.
Result<std::vector<ListeningPort>> scanListeningPorts(const std::string& proc_root,
                                                      uint16_t min_port,
                                                      const std::set<uint16_t>& hidden);

}  // namespace wsa::agent
