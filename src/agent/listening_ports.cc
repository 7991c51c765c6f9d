#include "agent/listening_ports.h"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <map>

#include "wsa/common/fs.h"
#include "wsa/common/strings.h"

namespace wsa::agent {

namespace {

constexpr std::string_view kListenState = "0A";

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

bool isDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::vector<ProcListener> parseProcNetTcp(std::string_view table) {
  std::vector<ProcListener> out;
  size_t pos = 0;
  bool header = true;
  while (pos < table.size()) {
    size_t nl = table.find('\n', pos);
    std::string_view line =
        table.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? table.size() : nl + 1;
    if (header) {  // "  sl  local_address rem_address   st ..."
      header = false;
      continue;
    }
    auto f = fields(line);
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if (f.size() < 10 || f[3] != kListenState) continue;
    auto colon = f[1].rfind(':');
    if (colon == std::string_view::npos) continue;
    std::string_view port_hex = f[1].substr(colon + 1);
    unsigned port = 0;
    auto [p1, e1] = std::from_chars(port_hex.data(), port_hex.data() + port_hex.size(), port, 16);
    if (e1 != std::errc() || p1 != port_hex.data() + port_hex.size() || port == 0 || port > 65535) {
      continue;
    }
    uint64_t inode = 0;
    auto [p2, e2] = std::from_chars(f[9].data(), f[9].data() + f[9].size(), inode);
    if (e2 != std::errc()) continue;
    out.push_back({static_cast<uint16_t>(port), inode});
  }
  return out;
}

Result<std::vector<ListeningPort>> scanListeningPorts(const std::string& proc_root,
                                                      uint16_t min_port,
                                                      const std::set<uint16_t>& hidden) {
  std::vector<ProcListener> all;
  int tables = 0;
  std::string errors;
  for (const char* t : {"/net/tcp", "/net/tcp6"}) {
    auto text = readFile(proc_root + t, 64 << 20);
    if (!text) {
      errors += (errors.empty() ? "" : "; ") + text.error();
      continue;
    }
    ++tables;
    auto got = parseProcNetTcp(*text);
    all.insert(all.end(), got.begin(), got.end());
  }
  if (tables == 0) return makeError("could not read the TCP tables: " + errors);

  // port → inodes wanted (a port can be bound on IPv4 and IPv6 by different processes).
  std::map<uint16_t, std::vector<uint64_t>> wanted;
  std::map<uint64_t, std::string> owner;  // inode → process name (filled below)
  for (const auto& l : all) {
    if (l.port < min_port || hidden.count(l.port) != 0) continue;
    wanted[l.port].push_back(l.inode);
    if (l.inode != 0) owner[l.inode];
  }
  // Walk /proc/<pid>/fd until every inode has an owner (or every process was seen).
  size_t unresolved = owner.size();
  if (unresolved > 0) {
    if (DIR* procs = ::opendir(proc_root.c_str())) {
      while (unresolved > 0) {
        dirent* pe = ::readdir(procs);
        if (pe == nullptr) break;
        if (!isDigits(pe->d_name)) continue;
        std::string pid_dir = proc_root + "/" + pe->d_name;
        DIR* fds = ::opendir((pid_dir + "/fd").c_str());
        if (fds == nullptr) continue;  // another user's process, or gone
        std::string comm;
        while (dirent* fe = ::readdir(fds)) {
          if (!isDigits(fe->d_name)) continue;
          char target[64];
          std::string link = pid_dir + "/fd/" + fe->d_name;
          ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
          if (n <= 8) continue;
          std::string_view t(target, static_cast<size_t>(n));
          if (t.substr(0, 8) != "socket:[" || t.back() != ']') continue;
          uint64_t inode = 0;
          auto digits = t.substr(8, t.size() - 9);
          if (std::from_chars(digits.data(), digits.data() + digits.size(), inode).ec !=
              std::errc()) {
            continue;
          }
          auto it = owner.find(inode);
          if (it == owner.end() || !it->second.empty()) continue;
          if (comm.empty()) {
            auto c = readFile(pid_dir + "/comm", 256);
            std::string_view name = c ? trim(*c) : std::string_view();
            comm = name.empty() ? std::string(1, '?') : std::string(name);
          }
          it->second = comm;
          --unresolved;
        }
        ::closedir(fds);
      }
      ::closedir(procs);
    }
  }
  std::vector<ListeningPort> out;
  for (const auto& [port, inodes] : wanted) {
    ListeningPort p;
    p.port = port;
    for (uint64_t inode : inodes) {
      auto it = owner.find(inode);
      if (it != owner.end() && !it->second.empty() && it->second != "?") {
        p.process_name = it->second;
        break;
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace wsa::agent
