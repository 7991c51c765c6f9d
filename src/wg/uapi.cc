#include "wsa/wg/uapi.h"

#include <sys/stat.h>

#include <cerrno>
#include <set>
#include <vector>

#include "wsa/common/logging.h"
#include "wsa/common/time.h"
#include "wsa/net/listener.h"

namespace wsa::wg {

namespace {

bool parseUint(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > max) return false;
  }
  *out = v;
  return true;
}

}  // namespace

std::string uapiGet(const Device& d, uint16_t listen_port) {
  std::string out;
  if (d.hasPrivateKey()) out += "private_key=" + toHex(d.privateKey().bytes()) + "\n";
  out += "listen_port=" + std::to_string(listen_port) + "\n";
  for (const auto& p : d.peers()) {
    out += "public_key=" + toHex(p.public_key) + "\n";
    auto psk = d.presharedKey(p.public_key);
    out += "preshared_key=" + toHex(psk ? psk->bytes() : Bytes32{}) + "\n";
    out += "protocol_version=1\n";
    if (p.endpoint.valid()) out += "endpoint=" + p.endpoint.toString() + "\n";
    int64_t secs = 0, nsecs = 0;
    if (p.last_handshake) {
      auto ns = toUnixNanos(*p.last_handshake);
      secs = ns / 1000000000;
      nsecs = ns % 1000000000;
    }
    out += "last_handshake_time_sec=" + std::to_string(secs) + "\n";
    out += "last_handshake_time_nsec=" + std::to_string(nsecs) + "\n";
    out += "tx_bytes=" + std::to_string(p.tx_bytes) + "\n";
    out += "rx_bytes=" + std::to_string(p.rx_bytes) + "\n";
    out += "persistent_keepalive_interval=" +
           std::to_string(
               std::chrono::duration_cast<std::chrono::seconds>(p.persistent_keepalive).count()) +
           "\n";
    for (const auto& a : p.allowed_ips) out += "allowed_ip=" + a.toString() + "\n";
  }
  return out;
}

std::string uapiCounters(const Device& d) {
  const Counters& c = d.counters();
  std::string out;
  auto kv = [&](const std::string& k, uint64_t v) { out += k + "=" + std::to_string(v) + "\n"; };
  kv("initiations_sent", c.initiations_sent);
  kv("initiations_received", c.initiations_received);
  kv("responses_sent", c.responses_sent);
  kv("responses_received", c.responses_received);
  kv("cookie_replies_sent", c.cookie_replies_sent);
  kv("cookie_replies_received", c.cookie_replies_received);
  kv("handshakes_completed", c.handshakes_completed);
  kv("rekeys", c.rekeys);
  kv("keepalives_sent", c.keepalives_sent);
  kv("sessions", d.sessionCount());
  for (size_t i = 0; i < static_cast<size_t>(Drop::kCount); ++i) {
    kv(std::string("drop_") + dropName(static_cast<Drop>(i)), c.drops[i]);
  }
  return out;
}

int uapiSet(Device& d, std::string_view body, const UapiHooks& hooks, std::string* error) {
  auto fail = [&](const std::string& why) {
    *error = why;
    return EINVAL;
  };
  std::optional<PeerConfig> peer;
  bool remove = false, update_only = false, replace_allowed = false;
  std::vector<Prefix> allowed;
  bool have_allowed = false;

  auto flush = [&]() -> int {
    if (!peer) return 0;
    auto existing = d.peer(peer->public_key);
    bool exists = existing.has_value();
    if (remove) {
      d.removePeer(peer->public_key);
    } else if (!update_only || exists) {
      if (have_allowed || replace_allowed) {
        std::vector<Prefix> list;
        if (!replace_allowed && exists) list = existing->allowed_ips;
        for (const auto& a : allowed) {
          bool dup = false;
          for (const auto& x : list) dup = dup || x == a;
          if (!dup) list.push_back(a);
        }
        peer->allowed_ips = list;
      }
      if (auto st = d.setPeer(*peer); !st) return fail(st.error());
    }
    peer.reset();
    remove = update_only = replace_allowed = have_allowed = false;
    allowed.clear();
    return 0;
  };

  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    std::string_view line =
        body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? body.size() : nl + 1;
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) return fail("line without '=': " + std::string(line));
    std::string key(line.substr(0, eq));
    std::string value(line.substr(eq + 1));
    uint64_t n = 0;
    if (key == "private_key") {
      auto k = keyFromHex(value);
      if (!k) return fail("private_key: " + k.error());
      d.setPrivateKey(Secret(*k));
    } else if (key == "listen_port") {
      if (!parseUint(value, 65535, &n)) return fail("listen_port: not a port");
      if (hooks.set_listen_port) {
        if (auto st = hooks.set_listen_port(static_cast<uint16_t>(n)); !st) return fail(st.error());
      }
    } else if (key == "fwmark") {
      if (!parseUint(value, 0xffffffff, &n)) return fail("fwmark: not a number");
    } else if (key == "replace_peers") {
      if (value != "true") return fail("replace_peers: only true");
      d.removeAllPeers();
    } else if (key == "public_key") {
      if (int rc = flush(); rc != 0) return rc;
      auto k = keyFromHex(value);
      if (!k) return fail("public_key: " + k.error());
      peer = PeerConfig{};
      peer->public_key = *k;
    } else if (!peer) {
      static const std::set<std::string> kPeerKeys = {"remove",
                                                      "update_only",
                                                      "preshared_key",
                                                      "endpoint",
                                                      "persistent_keepalive_interval",
                                                      "replace_allowed_ips",
                                                      "allowed_ip",
                                                      "protocol_version"};
      return fail(kPeerKeys.count(key) != 0 ? key + " before public_key" : "unknown key: " + key);
    } else if (key == "remove") {
      remove = value == "true";
    } else if (key == "update_only") {
      update_only = value == "true";
    } else if (key == "preshared_key") {
      auto k = keyFromHex(value);
      if (!k) return fail("preshared_key: " + k.error());
      peer->preshared_key = Secret(*k);
    } else if (key == "endpoint") {
      auto e = parseEndpoint(value);
      if (!e) return fail(e.error());
      peer->endpoint = *e;
    } else if (key == "persistent_keepalive_interval") {
      if (!parseUint(value, 65535, &n)) return fail("persistent_keepalive_interval: not a number");
      peer->persistent_keepalive = std::chrono::seconds(n);
    } else if (key == "replace_allowed_ips") {
      replace_allowed = value == "true";
    } else if (key == "allowed_ip") {
      auto p = parsePrefix(value);
      if (!p) return fail(p.error());
      allowed.push_back(*p);
      have_allowed = true;
    } else if (key == "protocol_version") {
      if (value != "1") return fail("protocol_version: only 1");
    } else {
      return fail("unknown key: " + key);
    }
  }
  return flush();
}

class UapiServer::Impl : public std::enable_shared_from_this<UapiServer::Impl> {
 public:
  Impl(Device& d, UapiHooks h) : device_(d), hooks_(std::move(h)), log_(logging::get("wg")) {}

  struct Conn {
    net::ByteStreamPtr stream;
    std::string in;
    std::string out;
    char buf[4096];
  };

  void serve(net::ByteStreamPtr stream) {
    if (conns_.size() >= 16) {
      stream->close();
      return;
    }
    auto c = std::make_shared<Conn>();
    c->stream = std::move(stream);
    conns_.insert(c);
    read(c);
  }

  void read(const std::shared_ptr<Conn>& c) {
    std::weak_ptr<Impl> weak = shared_from_this();
    c->stream->asyncReadSome(c->buf, sizeof(c->buf), [weak, c](std::error_code ec, size_t n) {
      auto self = weak.lock();
      if (!self) return;
      if (ec) {
        self->conns_.erase(c);
        return;
      }
      c->in.append(c->buf, n);
      if (c->in.size() > (1u << 20)) {  // a request this large is not a configuration
        self->conns_.erase(c);
        c->stream->close();
        return;
      }
      self->process(c);
    });
  }

  void process(const std::shared_ptr<Conn>& c) {
    size_t end = c->in.find("\n\n");
    if (end == std::string::npos) {
      read(c);
      return;
    }
    std::string req = c->in.substr(0, end + 1);
    c->in.erase(0, end + 2);
    std::string first = req.substr(0, req.find('\n'));
    std::string resp;
    if (first == "get=1") {
      resp = uapiGet(device_, hooks_.listen_port ? hooks_.listen_port() : 0) + "errno=0\n\n";
    } else if (first == "set=1") {
      std::string err;
      int rc = uapiSet(device_, std::string_view(req).substr(first.size() + 1), hooks_, &err);
      if (rc != 0) log_->warn("wg set: {}", err);
      resp = "errno=" + std::to_string(rc) + "\n\n";
    } else if (first == "wsa_counters=1") {
      resp = uapiCounters(device_) + "errno=0\n\n";
    } else {
      resp = "errno=" + std::to_string(EPROTO) + "\n\n";
    }
    c->out = std::move(resp);
    std::weak_ptr<Impl> weak = shared_from_this();
    c->stream->asyncWrite(c->out.data(), c->out.size(), [weak, c](std::error_code ec, size_t) {
      auto self = weak.lock();
      if (!self) return;
      if (ec) {
        self->conns_.erase(c);
        return;
      }
      self->process(c);  // another request may already be buffered
    });
  }

  Device& device_;
  UapiHooks hooks_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::set<std::shared_ptr<Conn>> conns_;
};

Result<std::unique_ptr<UapiServer>> UapiServer::listen(asio::io_context& io,
                                                       const std::string& path, Device& device,
                                                       UapiHooks hooks) {
  std::unique_ptr<UapiServer> s(new UapiServer());
  s->impl_ = std::make_shared<Impl>(device, std::move(hooks));
  mode_t old = ::umask(077);  // the socket hands out private keys: owner only
  auto bound = net::listenStreamsTo(io, "unix:" + path, "WireGuard configuration socket",
                                    std::weak_ptr<Impl>(s->impl_), s->impl_->listeners_);
  ::umask(old);
  if (!bound) return makeError(bound.error());
  return s;
}

UapiServer::~UapiServer() {
  for (auto& l : impl_->listeners_) l->close();
  for (auto& c : impl_->conns_) c->stream->close();
  impl_->conns_.clear();
}

}  // namespace wsa::wg
