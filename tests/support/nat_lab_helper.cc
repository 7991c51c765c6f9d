// wsa-nat-lab-helper: the small network programs the NAT lab (support/nat_lab.h) and its tests
// run inside their namespaces, so that no test depends on socat or python. Every mode is
// bounded in time except `reflect`, `echo` and `delay`, which run until they are signalled.
//
//   reflect --listen ADDR:PORT [--ready FILE]
//       A toy STUN server: answers every UDP datagram with the text "IP:PORT" of the source
//       address it saw.
//   punch --bind ADDR:PORT --reflector ADDR:PORT --self FILE --peer FILE [--timeout-ms N]
//       Learns its reflexive address from the reflector (same socket), writes it to FILE (self),
//       waits for the peer's reflexive address in the other FILE, then sends "punch" to it every
//       100 ms while answering the peer's punches. Prints "direct PEER" (exit 0) when a punch
//       arrived, "blocked PEER" (exit 1) when none did by the deadline; exit 3 when the reflector
//       did not answer, 4 when the peer's address did not appear.
//   echo --listen ADDR:PORT [--ready FILE]
//       A UDP echo server: answers every datagram (up to 64 KiB) with itself. The ready file
//       holds the bound address ("127.0.0.1:41234"; port 0 picks one).
//   exchange --to ADDR:PORT --count N [--max-size S] [--timeout-ms T]
//       A client of an echo server, in lock step from one socket: datagram i is i*397 % S + 1
//       bytes (S default 1200) of a fixed pseudo-random pattern, each waited for up to T ms
//       (default 5000). Prints "K of N answered intact" (and which were not); exit 0 when all
//       were, 1 otherwise.
//   burst --to ADDR:PORT --count N
//       Sends N datagrams at once.
//   count --listen ADDR:PORT --for-ms N [--ready FILE]
//       Prints how many datagrams arrived within N ms of being ready.
//   delay --queue N --delay-ms D [--max-queue Q] [--ready FILE]
//       Holds every packet of netfilter queue N (iptables -j NFQUEUE) for D ms, then lets it go:
//       a link delay where the kernel has no netem. At most Q packets (default 1000) are held,
//       a bound the kernel enforces (it drops beyond it and counts the drops in
//       /proc/net/netfilter/nfnetlink_queue). Verdicts are batched in order, so a notification
//       lost to a full socket buffer never strands a packet.
// Ready files are written atomically (a temporary file, then rename) once the socket is bound.

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

volatile std::sig_atomic_t g_stop = 0;
void onSignal(int) {
  g_stop = 1;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "wsa-nat-lab-helper: %s\n", what.c_str());
  std::exit(2);
}

std::optional<sockaddr_in> parseAddress(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (::inet_pton(AF_INET, text.substr(0, colon).c_str(), &sa.sin_addr) != 1) return std::nullopt;
  char* end = nullptr;
  unsigned long port = std::strtoul(text.c_str() + colon + 1, &end, 10);
  if (end == nullptr || *end != '\0' || port > 65535) return std::nullopt;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  return sa;
}

std::string formatAddress(const sockaddr_in& sa) {
  char ip[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(ntohs(sa.sin_port));
}

void writeAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f) die("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) die("cannot rename " + tmp);
}

std::optional<std::string> readLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line) || line.empty()) return std::nullopt;
  return line;
}

struct Args {
  std::map<std::string, std::string> values;
  std::string get(const std::string& key) const {
    auto it = values.find(key);
    if (it == values.end()) die("missing --" + key);
    return it->second;
  }
  std::string get(const std::string& key, const std::string& fallback) const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
  long number(const std::string& key, long fallback) const {
    auto it = values.find(key);
    if (it == values.end()) return fallback;
    char* end = nullptr;
    long v = std::strtol(it->second.c_str(), &end, 10);
    if (end == nullptr || *end != '\0' || v < 0) die("--" + key + ": not a number");
    return v;
  }
  sockaddr_in address(const std::string& key) const {
    auto a = parseAddress(get(key));
    if (!a) die("--" + key + ": want IP:PORT");
    return *a;
  }
};

int udpSocket(const sockaddr_in* bind_to) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind_to != nullptr &&
      ::bind(fd, reinterpret_cast<const sockaddr*>(bind_to), sizeof *bind_to) != 0) {
    die("bind " + formatAddress(*bind_to) + ": " + std::strerror(errno));
  }
  return fd;
}

// One datagram within `timeout`, or nullopt.
std::optional<std::pair<std::string, sockaddr_in>> receive(int fd,
                                                           std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(std::max<long>(0, timeout.count())));
  if (n <= 0) return std::nullopt;
  char buf[1500];
  sockaddr_in from{};
  socklen_t len = sizeof from;
  ssize_t got = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
  if (got < 0) return std::nullopt;
  return std::make_pair(std::string(buf, static_cast<size_t>(got)), from);
}

void sendTo(int fd, const std::string& data, const sockaddr_in& to) {
  ::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

int reflect(const Args& args) {
  sockaddr_in listen = args.address("listen");
  int fd = udpSocket(&listen);
  if (auto ready = args.get("ready", ""); !ready.empty()) writeAtomically(ready, "ready\n");
  while (g_stop == 0) {
    auto d = receive(fd, 200ms);
    if (d) sendTo(fd, formatAddress(d->second), d->second);
  }
  return 0;
}

int punch(const Args& args) {
  sockaddr_in bind_to = args.address("bind");
  sockaddr_in reflector = args.address("reflector");
  std::string self_file = args.get("self"), peer_file = args.get("peer");
  auto deadline = Clock::now() + std::chrono::milliseconds(args.number("timeout-ms", 5000));
  int fd = udpSocket(&bind_to);

  std::optional<std::string> self;
  while (!self && Clock::now() < deadline) {
    sendTo(fd, "?", reflector);
    auto until = Clock::now() + 200ms;
    while (!self && Clock::now() < until) {
      auto d =
          receive(fd, std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
      if (d && d->second.sin_addr.s_addr == reflector.sin_addr.s_addr &&
          d->second.sin_port == reflector.sin_port) {
        self = d->first;
      }
    }
  }
  if (!self) {
    std::printf("no reflexive address\n");
    return 3;
  }
  writeAtomically(self_file, *self + "\n");

  std::optional<sockaddr_in> peer;
  while (!peer && Clock::now() < deadline) {
    if (auto line = readLine(peer_file)) peer = parseAddress(*line);
    if (!peer) std::this_thread::sleep_for(20ms);  // the other helper writes it; bounded
  }
  if (!peer) {
    std::printf("no peer address\n");
    return 4;
  }

  bool got = false;
  while (!got && Clock::now() < deadline) {
    sendTo(fd, "punch", *peer);
    auto until = std::min(deadline, Clock::now() + 100ms);
    while (!got && Clock::now() < until) {
      auto d =
          receive(fd, std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
      if (d && d->first == "punch") got = true;
    }
  }
  // Let the peer see some of ours too, if its own deadline has not passed.
  for (int i = 0; got && i < 5; ++i) {
    sendTo(fd, "punch", *peer);
    receive(fd, 50ms);  // the peer's punches, drained while its own deadline runs
  }
  std::printf("%s %s\n", got ? "direct" : "blocked", formatAddress(*peer).c_str());
  return got ? 0 : 1;
}

int echo(const Args& args) {
  sockaddr_in listen = args.address("listen");
  int fd = udpSocket(&listen);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  if (auto ready = args.get("ready", ""); !ready.empty()) {
    writeAtomically(ready, formatAddress(bound) + "\n");
  }
  std::vector<char> buf(65536);
  while (g_stop == 0) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    ssize_t n =
        ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) continue;
    ::sendto(fd, buf.data(), static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
             from_len);
  }
  return 0;
}

int exchange(const Args& args) {
  sockaddr_in to = args.address("to");
  long count = args.number("count", 1);
  long max_size = std::max(1L, std::min(65000L, args.number("max-size", 1200)));
  auto timeout = std::chrono::milliseconds(args.number("timeout-ms", 5000));
  int fd = udpSocket(nullptr);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    die("connect " + formatAddress(to) + ": " + std::strerror(errno));
  }
  std::vector<char> buf(65536);
  long intact = 0;
  std::string missing;
  for (long i = 0; i < count && g_stop == 0; ++i) {
    std::string d(static_cast<size_t>(i * 397 % max_size + 1), '\0');
    auto x = static_cast<uint32_t>(i);
    for (auto& c : d) {
      x = x * 1664525 + 1013904223;
      c = static_cast<char>(x >> 24);
    }
    if (::send(fd, d.data(), d.size(), 0) != static_cast<ssize_t>(d.size())) continue;
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&p, 1, static_cast<int>(std::max<long>(0, left.count()))) <= 0) break;
      ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n < 0) break;
      if (std::string(buf.data(), static_cast<size_t>(n)) == d) {
        ++intact;
        d.clear();
        break;
      }
    }
    if (!d.empty()) missing += " " + std::to_string(i);
  }
  std::printf("%ld of %ld answered intact\n", intact, count);
  if (!missing.empty()) std::printf("no intact answer to datagram(s)%s\n", missing.c_str());
  return intact == count ? 0 : 1;
}

int burst(const Args& args) {
  sockaddr_in to = args.address("to");
  long count = args.number("count", 1);
  int fd = udpSocket(nullptr);
  for (long i = 0; i < count; ++i) sendTo(fd, "burst " + std::to_string(i), to);
  return 0;
}

int count(const Args& args) {
  sockaddr_in listen = args.address("listen");
  int fd = udpSocket(&listen);
  if (auto ready = args.get("ready", ""); !ready.empty()) writeAtomically(ready, "ready\n");
  auto deadline = Clock::now() + std::chrono::milliseconds(args.number("for-ms", 1000));
  long n = 0;
  while (Clock::now() < deadline && g_stop == 0) {
    auto d =
        receive(fd, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (d) ++n;
  }
  std::printf("%ld\n", n);
  return 0;
}

// --- delay: a netfilter queue client over raw netlink -------------------------------------

class NetlinkMessage {
 public:
  NetlinkMessage(uint16_t type, uint16_t flags, uint16_t queue) : buf_(kHeader, 0) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
    std::memcpy(buf_.data(), &h, sizeof h);
    nfgenmsg g{};
    g.nfgen_family = AF_UNSPEC;
    g.version = NFNETLINK_V0;
    g.res_id = htons(queue);
    std::memcpy(buf_.data() + NLMSG_HDRLEN, &g, sizeof g);
  }
  void attr(uint16_t type, const void* data, size_t len) {
    size_t off = buf_.size();
    buf_.resize(off + NLA_ALIGN(NLA_HDRLEN + len), 0);
    nlattr a{};
    a.nla_type = type;
    a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
    std::memcpy(buf_.data() + off, &a, sizeof a);
    std::memcpy(buf_.data() + off + NLA_HDRLEN, data, len);
  }
  const std::vector<char>& bytes() {
    uint32_t len = static_cast<uint32_t>(buf_.size());
    std::memcpy(buf_.data() + offsetof(nlmsghdr, nlmsg_len), &len, sizeof len);
    return buf_;
  }

 private:
  static constexpr size_t kHeader = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
  std::vector<char> buf_;
};

constexpr uint16_t queueMessage(int type) {
  return static_cast<uint16_t>((NFNL_SUBSYS_QUEUE << 8) | type);
}

void sendNetlink(int fd, NetlinkMessage& m) {
  const auto& b = m.bytes();
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    die(std::string("netlink send: ") + std::strerror(errno));
  }
}

// Sends a configuration message with NLM_F_ACK and returns the kernel's answer (0 = ok).
int configure(int fd, NetlinkMessage& m) {
  sendNetlink(fd, m);
  char buf[8192];
  auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) return errno;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        nlmsgerr e{};
        std::memcpy(&e, NLMSG_DATA(h), sizeof e);
        return -e.error;
      }
    }
  }
  return ETIMEDOUT;
}

void verdictUpTo(int fd, uint16_t queue, uint32_t id) {
  NetlinkMessage m(queueMessage(NFQNL_MSG_VERDICT_BATCH), 0, queue);
  nfqnl_msg_verdict_hdr v{htonl(NF_ACCEPT), htonl(id)};
  m.attr(NFQA_VERDICT_HDR, &v, sizeof v);
  sendNetlink(fd, m);
}

int delay(const Args& args) {
  long queue_number = args.number("queue", -1);
  if (queue_number < 0 || queue_number > 65535) die("--queue: 0..65535");
  auto queue = static_cast<uint16_t>(queue_number);
  auto hold = std::chrono::milliseconds(args.number("delay-ms", 0));
  auto max_queue = static_cast<uint32_t>(args.number("max-queue", 1000));

  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) die(std::string("netlink socket: ") + std::strerror(errno));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    die(std::string("netlink bind: ") + std::strerror(errno));
  }
  int rcvbuf = 4 << 20, one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  ::setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

  NetlinkMessage bind_msg(queueMessage(NFQNL_MSG_CONFIG), NLM_F_ACK, queue);
  nfqnl_msg_config_cmd cmd{NFQNL_CFG_CMD_BIND, 0, htons(AF_INET)};
  bind_msg.attr(NFQA_CFG_CMD, &cmd, sizeof cmd);
  if (int e = configure(fd, bind_msg); e != 0) die("bind queue: " + std::string(strerror(e)));
  NetlinkMessage params(queueMessage(NFQNL_MSG_CONFIG), NLM_F_ACK, queue);
  nfqnl_msg_config_params p{htonl(0), NFQNL_COPY_META};
  params.attr(NFQA_CFG_PARAMS, &p, sizeof p);
  uint32_t maxlen = htonl(max_queue);
  params.attr(NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof maxlen);
  if (int e = configure(fd, params); e != 0) die("queue params: " + std::string(strerror(e)));

  if (auto ready = args.get("ready", ""); !ready.empty()) writeAtomically(ready, "ready\n");

  // Packets in arrival order with the time each may go. The kernel holds at most max_queue
  // of them, so this never holds more.
  std::deque<std::pair<Clock::time_point, uint32_t>> held;
  std::vector<char> buf(1 << 16);
  uint64_t delayed = 0;
  while (g_stop == 0) {
    auto now = Clock::now();
    std::optional<uint32_t> due;
    while (!held.empty() && held.front().first <= now) {
      due = held.front().second;
      held.pop_front();
    }
    if (due) verdictUpTo(fd, queue, *due);
    auto wait = held.empty() ? std::chrono::nanoseconds(200ms)
                             : std::chrono::nanoseconds(held.front().first - now);
    timespec ts{static_cast<time_t>(wait.count() / 1000000000),
                static_cast<long>(wait.count() % 1000000000)};
    pollfd pf{fd, POLLIN, 0};
    if (::ppoll(&pf, 1, &ts, nullptr) <= 0) continue;
    ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n <= 0) continue;
    auto arrived = Clock::now();
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != queueMessage(NFQNL_MSG_PACKET)) continue;
      int attrs_len = static_cast<int>(h->nlmsg_len) - NLMSG_HDRLEN - NLMSG_ALIGN(sizeof(nfgenmsg));
      char* a = static_cast<char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(nfgenmsg));
      while (attrs_len >= static_cast<int>(NLA_HDRLEN)) {
        nlattr na{};
        std::memcpy(&na, a, sizeof na);
        if (na.nla_len < NLA_HDRLEN || na.nla_len > attrs_len) break;
        if ((na.nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR) {
          nfqnl_msg_packet_hdr ph{};
          std::memcpy(&ph, a + NLA_HDRLEN, sizeof ph);
          held.emplace_back(arrived + hold, ntohl(ph.packet_id));
          ++delayed;
        }
        attrs_len -= static_cast<int>(NLA_ALIGN(na.nla_len));
        a += NLA_ALIGN(na.nla_len);
      }
    }
  }
  std::fprintf(stderr, "delay: %llu packets delayed, %zu held at exit\n",
               static_cast<unsigned long long>(delayed), held.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    die("usage: wsa-nat-lab-helper reflect|punch|echo|exchange|burst|count|delay --KEY VALUE...");
  std::string mode = argv[1];
  Args args;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) die("unexpected " + key);
    args.values[key.substr(2)] = argv[i + 1];
  }
  if (argc % 2 != 0) die("every option takes a value");
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  if (mode == "reflect") return reflect(args);
  if (mode == "punch") return punch(args);
  if (mode == "echo") return echo(args);
  if (mode == "exchange") return exchange(args);
  if (mode == "burst") return burst(args);
  if (mode == "count") return count(args);
  if (mode == "delay") return delay(args);
  die("unknown mode " + mode);
}
