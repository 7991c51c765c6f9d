#include "wsa/wg/device.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include "wg/messages.h"
#include "wg/noise.h"
#include "wg/replay.h"
#include "wsa/common/time.h"

namespace wsa::wg {

const char* dropName(Drop d) {
  switch (d) {
    case Drop::kShort:
      return "short";
    case Drop::kUnknownType:
      return "unknown_type";
    case Drop::kBadMac1:
      return "bad_mac1";
    case Drop::kCookieSent:
      return "cookie_sent";
    case Drop::kRateLimited:
      return "rate_limited";
    case Drop::kBadHandshake:
      return "bad_handshake";
    case Drop::kStaleTimestamp:
      return "stale_timestamp";
    case Drop::kHandshakeFlood:
      return "handshake_flood";
    case Drop::kUnknownIndex:
      return "unknown_index";
    case Drop::kExpiredKey:
      return "expired_key";
    case Drop::kReplay:
      return "replay";
    case Drop::kBadAuth:
      return "bad_auth";
    case Drop::kBadCookie:
      return "bad_cookie";
    case Drop::kBadPacket:
      return "bad_packet";
    case Drop::kSourceNotAllowed:
      return "source_not_allowed";
    case Drop::kNoRoute:
      return "no_route";
    case Drop::kNoEndpoint:
      return "no_endpoint";
    case Drop::kStagedOverflow:
      return "staged_overflow";
    case Drop::kHandshakeGaveUp:
      return "handshake_gave_up";
    case Drop::kCount:
      break;
  }
  return "unknown";
}

namespace {

struct Keypair {
  Keypair(const Secret& send_key, const Secret& recv_key) : send(send_key), recv(recv_key) {}
  AeadKey send;
  AeadKey recv;
  uint64_t send_counter = 0;
  ReplayWindow replay;
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  MonoTime created{};
  bool initiator = false;
};

// Source address and port as a key for cookies and rate limits.
std::string sourceKey(const Endpoint& e) {
  std::string k(reinterpret_cast<const char*>(e.addr.data()), e.v6 ? 16 : 4);
  return k;
}

}  // namespace

class Peer {
 public:
  explicit Peer(Device::Impl& dev);
  ~Peer();

  RemoteStatic remote;
  Handshake hs;
  Endpoint endpoint;
  // Roaming off: the endpoint follows setPeer only (path probes choose it), unless it has none.
  bool roaming = true;
  std::unique_ptr<Keypair> previous, current, next;
  // Replay and flood guards for initiations from this peer.
  Tai64n last_timestamp{};
  MonoTime last_initiation_consumed{};
  bool consumed_any = false;
  // Our initiations: rate limit and retries.
  MonoTime last_initiation_sent{};
  bool sent_any = false;
  int attempts = 0;
  bool sent_last_minute_handshake = false;
  bool need_another_keepalive = false;
  // Cookies: the last mac1 we sent (to open a cookie reply) and the cookie for our mac2.
  Mac16 last_mac1{};
  bool have_last_mac1 = false;
  Mac16 cookie{};
  MonoTime cookie_received{};
  bool have_cookie = false;
  Duration persistent_keepalive{};
  std::deque<std::vector<uint8_t>> staged;
  // Timers (whitepaper §6).
  std::unique_ptr<Timer> retransmit, send_keepalive, new_handshake, zero_keys, persistent;
  // Status.
  std::optional<SystemTime> last_handshake;
  uint64_t rx_bytes = 0, tx_bytes = 0, rx_packets = 0, tx_packets = 0, handshakes = 0;
};

class Device::Impl {
 public:
  Impl(Clock& clock, DeviceOptions options, Io io)
      : clock_(clock), opts_(options), io_(std::move(io)) {
    randomBytes(cookie_secret_.data(), cookie_secret_.size());
    cookie_secret_time_ = clock_.now();
  }

  // --- configuration ---------------------------------------------------------------------------

  void setPrivateKey(const Secret& key) {
    id_ = makeIdentity(key);
    has_key_ = true;
    // A peer with our own public key cannot exist.
    if (auto it = peers_.find(id_.public_key); it != peers_.end()) removePeer(it->first);
    for (auto& [k, p] : peers_) {
      Secret psk = p->remote.preshared_key;
      p->remote = makeRemoteStatic(id_, k, psk);
      expireSessions(*p);
    }
  }

  Status setPeer(const PeerConfig& c) {
    auto it = peers_.find(c.public_key);
    Peer* p;
    if (it == peers_.end()) {
      if (peers_.size() >= opts_.max_peers) {
        return makeError("too many peers (" + std::to_string(opts_.max_peers) + ")");
      }
      if (has_key_ && c.public_key == id_.public_key) {
        return makeError("a peer cannot have the device's own public key");
      }
      auto owned = std::make_unique<Peer>(*this);
      p = owned.get();
      p->remote = makeRemoteStatic(id_, c.public_key, Secret());
      peers_[c.public_key] = std::move(owned);
    } else {
      p = it->second.get();
    }
    if (c.preshared_key) {
      p->remote.preshared_key = *c.preshared_key;
    }
    if (c.endpoint) p->endpoint = *c.endpoint;
    if (c.roaming) p->roaming = *c.roaming;
    if (c.allowed_ips) {
      allowed_.removePeer(p);
      for (const auto& prefix : *c.allowed_ips) allowed_.insert(prefix, p);
    }
    if (c.persistent_keepalive) {
      bool was_off = p->persistent_keepalive == Duration::zero();
      p->persistent_keepalive = *c.persistent_keepalive;
      // Turning it on sends a keepalive at once (as wg does), which also starts a handshake.
      if (was_off && p->persistent_keepalive > Duration::zero() && has_key_ &&
          p->endpoint.valid()) {
        sendKeepalive(*p);
      }
    }
    return {};
  }

  static void roam(Peer& p, const Endpoint& from) {
    if (p.roaming || !p.endpoint.valid()) p.endpoint = from;
  }

  void removePeer(const PublicKey& key) {
    auto it = peers_.find(key);
    if (it == peers_.end()) return;
    Peer& p = *it->second;
    expireSessions(p);
    allowed_.removePeer(&p);
    peers_.erase(it);
  }

  // --- receive ---------------------------------------------------------------------------------

  void receive(const Endpoint& from, std::span<uint8_t> d) {
    if (d.size() < 4) return drop(Drop::kShort);
    uint8_t type = d[0];
    if (d[1] != 0 || d[2] != 0 || d[3] != 0) return drop(Drop::kUnknownType);
    switch (type) {
      case kMsgData:
        return receiveData(from, d);
      case kMsgInitiation:
        if (d.size() != kInitiationSize) return drop(Drop::kShort);
        return receiveInitiation(from, d.data());
      case kMsgResponse:
        if (d.size() != kResponseSize) return drop(Drop::kShort);
        return receiveResponse(from, d.data());
      case kMsgCookieReply:
        if (d.size() != kCookieReplySize) return drop(Drop::kShort);
        return receiveCookieReply(d.data());
      default:
        return drop(Drop::kUnknownType);
    }
  }

  // Handshake messages: mac1 always, and under load mac2 and a per-source rate limit.
  // Returns false if the message must not be processed further.
  bool admitHandshake(const Endpoint& from, const uint8_t* msg, size_t mac_offset) {
    if (!has_key_) return false;
    Mac16 m1 = mac({id_.mac1_key.data(), id_.mac1_key.size()}, {msg, mac_offset});
    if (!equalBytes(m1.data(), msg + mac_offset, kMacSize)) {
      drop(Drop::kBadMac1);
      return false;
    }
    noteHandshakeLoad();
    if (!underLoad()) return true;
    Mac16 cookie = cookieFor(from);
    Mac16 m2 = mac({cookie.data(), cookie.size()}, {msg, mac_offset + kMacSize});
    if (!equalBytes(m2.data(), msg + mac_offset + kMacSize, kMacSize)) {
      sendCookieReply(from, msg, mac_offset, cookie);
      drop(Drop::kCookieSent);
      return false;
    }
    if (!allowSource(from)) {
      drop(Drop::kRateLimited);
      return false;
    }
    return true;
  }

  void receiveInitiation(const Endpoint& from, const uint8_t* msg) {
    if (!admitHandshake(from, msg, kInitiationMacOffset)) return;
    auto consumed = consumeInitiation(id_, msg, [this](const PublicKey& k) -> const RemoteStatic* {
      auto it = peers_.find(k);
      return it == peers_.end() ? nullptr : &it->second->remote;
    });
    if (!consumed) return drop(Drop::kBadHandshake);
    Peer& p = *peers_.at(consumed->initiator);
    if (!tai64nAfter(consumed->timestamp, p.last_timestamp)) return drop(Drop::kStaleTimestamp);
    MonoTime now = clock_.now();
    if (p.consumed_any && now - p.last_initiation_consumed < opts_.timing.min_initiation_interval) {
      return drop(Drop::kHandshakeFlood);
    }
    p.last_timestamp = consumed->timestamp;
    p.last_initiation_consumed = now;
    p.consumed_any = true;
    counters_.initiations_received++;
    dropHandshakeIndex(p);
    acceptInitiation(p.hs, std::move(*consumed));
    roam(p, from);
    p.rx_bytes += kInitiationSize;
    anyAuthenticatedPacketTraversal(p);
    anyAuthenticatedPacketReceived(p);

    // Answer, and derive the session: it waits as `next` until the initiator uses it.
    uint32_t index = newIndex();
    uint8_t out[kResponseSize];
    if (!createResponse(p.remote, p.hs, index, out)) {
      p.hs.zero();
      return drop(Drop::kBadHandshake);
    }
    addMacs(p, out, kResponseMacOffset);
    auto kp = deriveKeypair(p.hs, /*initiator=*/false, index, now);
    indices_[index] = Entry{&p, kp.get()};
    installNext(p, std::move(kp));
    sessionDerived(p);
    // The response goes back where the initiation came from, whatever the peer's endpoint (a
    // peer without roaming may be pointed at the relay while it initiated over a direct path).
    p.tx_bytes += sizeof(out);
    if (io_.send) io_.send(from, {out, sizeof(out)});
    counters_.responses_sent++;
    anyAuthenticatedPacketSent(p);
  }

  // The transport keypair from a finished handshake (which is wiped by the derivation).
  static std::unique_ptr<Keypair> deriveKeypair(Handshake& hs, bool initiator, uint32_t local_index,
                                                MonoTime now) {
    Secret send_key, recv_key;
    uint32_t remote_index = hs.remote_index;
    deriveTransportKeys(hs, initiator, &send_key, &recv_key);
    auto kp = std::make_unique<Keypair>(send_key, recv_key);
    kp->local_index = local_index;
    kp->remote_index = remote_index;
    kp->created = now;
    kp->initiator = initiator;
    return kp;
  }

  void receiveResponse(const Endpoint& from, const uint8_t* msg) {
    if (!admitHandshake(from, msg, kResponseMacOffset)) return;
    uint32_t receiver = readLe32(msg + kResponseReceiverOffset);
    auto it = indices_.find(receiver);
    if (it == indices_.end() || it->second.keypair != nullptr) return drop(Drop::kUnknownIndex);
    Peer& p = *it->second.peer;
    if (p.hs.state != Handshake::State::kInitiationCreated || p.hs.local_index != receiver) {
      return drop(Drop::kUnknownIndex);
    }
    if (!consumeResponse(id_, p.remote, p.hs, msg)) return drop(Drop::kBadHandshake);
    counters_.responses_received++;
    MonoTime now = clock_.now();
    auto kp = deriveKeypair(p.hs, /*initiator=*/true, receiver, now);
    it->second.keypair = kp.get();
    installCurrent(p, std::move(kp));
    roam(p, from);
    p.rx_bytes += kResponseSize;
    anyAuthenticatedPacketTraversal(p);
    anyAuthenticatedPacketReceived(p);
    handshakeComplete(p);
    sessionDerived(p);
    // Confirm the session to the responder: staged packets, or a keepalive.
    if (!sendStaged(p)) sendKeepalive(p);
  }

  void receiveCookieReply(const uint8_t* msg) {
    uint32_t receiver = readLe32(msg + kCookieReceiverOffset);
    auto it = indices_.find(receiver);
    if (it == indices_.end()) return drop(Drop::kUnknownIndex);
    Peer& p = *it->second.peer;
    if (!p.have_last_mac1) return drop(Drop::kBadCookie);
    Mac16 cookie;
    if (!xaeadOpen(p.remote.cookie_key.data(), msg + kCookieNonceOffset,
                   {msg + kCookieOffset, kMacSize + kAeadTagSize},
                   {p.last_mac1.data(), p.last_mac1.size()}, cookie.data())) {
      return drop(Drop::kBadCookie);
    }
    p.cookie = cookie;
    p.cookie_received = clock_.now();
    p.have_cookie = true;
    counters_.cookie_replies_received++;
  }

  void receiveData(const Endpoint& from, std::span<uint8_t> d) {
    if (d.size() < kDataMinSize) return drop(Drop::kShort);
    uint32_t receiver = readLe32(d.data() + kDataReceiverOffset);
    auto it = indices_.find(receiver);
    if (it == indices_.end() || it->second.keypair == nullptr) return drop(Drop::kUnknownIndex);
    Peer& p = *it->second.peer;
    Keypair& kp = *it->second.keypair;
    uint64_t counter = readLe64(d.data() + kDataCounterOffset);
    MonoTime now = clock_.now();
    if (counter >= opts_.timing.reject_after_messages ||
        now - kp.created >= opts_.timing.reject_after_time) {
      return drop(Drop::kExpiredKey);
    }
    if (!kp.replay.check(counter)) return drop(Drop::kReplay);
    std::span<uint8_t> sealed = d.subspan(kDataHeaderSize);
    uint8_t* plain = sealed.data();  // in place
    if (!kp.recv.open(counter, sealed, plain)) return drop(Drop::kBadAuth);
    if (!kp.replay.update(counter)) return drop(Drop::kReplay);
    size_t plain_len = sealed.size() - kAeadTagSize;

    if (&kp == p.next.get()) {
      // The initiator used the new session: it is confirmed.
      promoteNext(p);
      handshakeComplete(p);
      sendStaged(p);
    }
    roam(p, from);  // roaming: the latest authenticated source
    p.rx_bytes += d.size();
    anyAuthenticatedPacketTraversal(p);
    anyAuthenticatedPacketReceived(p);
    keepKeyFreshReceiving(p, kp);
    if (plain_len == 0) return;  // keepalive
    dataReceived(p);

    // An IP packet from an address this peer may use.
    size_t len;
    const uint8_t* src;
    bool v6;
    if (!parseInner(plain, plain_len, &len, &src, &v6)) return drop(Drop::kBadPacket);
    if (allowed_.lookup(src, v6) != &p) return drop(Drop::kSourceNotAllowed);
    p.rx_packets++;
    if (io_.deliver) io_.deliver({plain, len});
  }

  static bool parseInner(const uint8_t* pkt, size_t n, size_t* len, const uint8_t** src, bool* v6) {
    if (n < 1) return false;
    int version = pkt[0] >> 4;
    if (version == 4) {
      if (n < 20) return false;
      size_t total = static_cast<size_t>(pkt[2]) << 8 | pkt[3];
      if (total < 20 || total > n) return false;
      *len = total;
      *src = pkt + 12;
      *v6 = false;
      return true;
    }
    if (version == 6) {
      if (n < 40) return false;
      size_t total = 40 + (static_cast<size_t>(pkt[4]) << 8 | pkt[5]);
      if (total > n) return false;
      *len = total;
      *src = pkt + 8;
      *v6 = true;
      return true;
    }
    return false;
  }

  // --- send ------------------------------------------------------------------------------------

  void send(std::span<const uint8_t> pkt) {
    if (pkt.empty() || pkt.size() > 65535) return drop(Drop::kBadPacket);
    const uint8_t* dst;
    bool v6;
    int version = pkt[0] >> 4;
    if (version == 4 && pkt.size() >= 20) {
      dst = pkt.data() + 16;
      v6 = false;
    } else if (version == 6 && pkt.size() >= 40) {
      dst = pkt.data() + 24;
      v6 = true;
    } else {
      return drop(Drop::kBadPacket);
    }
    Peer* p = allowed_.lookup(dst, v6);
    if (p == nullptr) return drop(Drop::kNoRoute);
    if (!p->endpoint.valid()) return drop(Drop::kNoEndpoint);
    Keypair* kp = p->current.get();
    if (usable(kp)) {
      sendData(*p, *kp, pkt);
      keepKeyFreshSending(*p, *kp);
      return;
    }
    stage(*p, pkt);
    sendInitiation(*p, false);
  }

  bool usable(const Keypair* kp) const {
    return kp != nullptr && kp->send_counter < opts_.timing.reject_after_messages &&
           clock_.now() - kp->created < opts_.timing.reject_after_time;
  }

  void stage(Peer& p, std::span<const uint8_t> pkt) {
    if (p.staged.size() >= opts_.max_staged_per_peer) {
      p.staged.pop_front();
      drop(Drop::kStagedOverflow);
    }
    p.staged.emplace_back(pkt.begin(), pkt.end());
  }

  // Sends what was staged if there is a usable session; true if anything was sent.
  bool sendStaged(Peer& p) {
    Keypair* kp = p.current.get();
    if (p.staged.empty() || !usable(kp)) return false;
    auto packets = std::move(p.staged);
    p.staged.clear();
    for (auto& pkt : packets) sendData(p, *kp, pkt);
    keepKeyFreshSending(p, *kp);
    return true;
  }

  void sendData(Peer& p, Keypair& kp, std::span<const uint8_t> plain) {
    size_t padded = plain.size();
    if (padded % 16 != 0) {
      size_t up = (padded + 15) / 16 * 16;
      padded = std::max(plain.size(), std::min(up, opts_.mtu));
    }
    buf_.resize(kDataHeaderSize + padded + kAeadTagSize);
    uint8_t* out = buf_.data();
    writeType(out, kMsgData);
    writeLe32(out + kDataReceiverOffset, kp.remote_index);
    uint64_t counter = kp.send_counter++;
    writeLe64(out + kDataCounterOffset, counter);
    // Plaintext with its zero padding, sealed in place.
    if (!plain.empty()) std::memcpy(out + kDataHeaderSize, plain.data(), plain.size());
    std::memset(out + kDataHeaderSize + plain.size(), 0, padded - plain.size());
    kp.send.seal(counter, {out + kDataHeaderSize, padded}, out + kDataHeaderSize);
    transmit(p, {out, buf_.size()});
    anyAuthenticatedPacketTraversal(p);
    anyAuthenticatedPacketSent(p);
    if (!plain.empty()) {
      p.tx_packets++;
      dataSent(p);
    } else {
      counters_.keepalives_sent++;
    }
  }

  void sendKeepalive(Peer& p) {
    if (!p.staged.empty()) {
      if (!sendStaged(p)) sendInitiation(p, false);
      return;
    }
    Keypair* kp = p.current.get();
    if (usable(kp)) {
      sendData(p, *kp, {});
      return;
    }
    // No session: the keepalive waits for one (an empty staged packet), and asks for it.
    p.staged.emplace_back();
    sendInitiation(p, false);
  }

  void transmit(Peer& p, std::span<const uint8_t> datagram) {
    if (!p.endpoint.valid()) return;
    p.tx_bytes += datagram.size();
    if (io_.send) io_.send(p.endpoint, datagram);
  }

  void sendInitiation(Peer& p, bool retry) {
    if (!retry) p.attempts = 0;
    if (!has_key_ || !p.endpoint.valid()) return;
    MonoTime now = clock_.now();
    if (p.sent_any && now - p.last_initiation_sent < opts_.timing.rekey_timeout) return;
    p.last_initiation_sent = now;
    p.sent_any = true;
    dropHandshakeIndex(p);
    uint32_t index = newIndex();
    uint8_t out[kInitiationSize];
    if (!createInitiation(id_, p.remote, p.hs, index, tai64n(wallNanos()), out)) {
      p.hs.zero();
      return;
    }
    indices_[index] = Entry{&p, nullptr};
    addMacs(p, out, kInitiationMacOffset);
    transmit(p, {out, sizeof(out)});
    counters_.initiations_sent++;
    anyAuthenticatedPacketTraversal(p);
    anyAuthenticatedPacketSent(p);
    handshakeInitiated(p);
  }

  void addMacs(Peer& p, uint8_t* msg, size_t mac_offset) {
    Mac16 m1 = mac({p.remote.mac1_key.data(), p.remote.mac1_key.size()}, {msg, mac_offset});
    std::memcpy(msg + mac_offset, m1.data(), kMacSize);
    p.last_mac1 = m1;
    p.have_last_mac1 = true;
    if (p.have_cookie && clock_.now() - p.cookie_received < opts_.timing.cookie_lifetime) {
      Mac16 m2 = mac({p.cookie.data(), p.cookie.size()}, {msg, mac_offset + kMacSize});
      std::memcpy(msg + mac_offset + kMacSize, m2.data(), kMacSize);
    } else {
      std::memset(msg + mac_offset + kMacSize, 0, kMacSize);
    }
  }

  // --- cookies and load ------------------------------------------------------------------------

  Mac16 cookieFor(const Endpoint& from) {
    MonoTime now = clock_.now();
    if (now - cookie_secret_time_ >= opts_.timing.cookie_lifetime) {
      randomBytes(cookie_secret_.data(), cookie_secret_.size());
      cookie_secret_time_ = now;
    }
    uint8_t src[18];
    size_t n = from.v6 ? 16 : 4;
    std::memcpy(src, from.addr.data(), n);
    src[n] = static_cast<uint8_t>(from.port >> 8);
    src[n + 1] = static_cast<uint8_t>(from.port);
    return mac({cookie_secret_.data(), cookie_secret_.size()}, {src, n + 2});
  }

  void sendCookieReply(const Endpoint& to, const uint8_t* msg, size_t mac_offset,
                       const Mac16& cookie) {
    uint8_t out[kCookieReplySize];
    writeType(out, kMsgCookieReply);
    std::memcpy(out + kCookieReceiverOffset, msg + 4, 4);  // the sender index of the message
    randomBytes(out + kCookieNonceOffset, kXNonceSize);
    xaeadSeal(id_.cookie_key.data(), out + kCookieNonceOffset, {cookie.data(), cookie.size()},
              {msg + mac_offset, kMacSize}, out + kCookieOffset);
    counters_.cookie_replies_sent++;
    if (io_.send) io_.send(to, {out, sizeof(out)});
  }

  void noteHandshakeLoad() {
    MonoTime now = clock_.now();
    if (now - load_window_start_ >= std::chrono::seconds(1)) {
      load_window_start_ = now;
      load_count_ = 0;
    }
    if (++load_count_ > opts_.under_load_handshakes_per_second) {
      under_load_until_ = now + std::chrono::seconds(1);
    }
  }

  bool underLoad() const { return clock_.now() < under_load_until_; }

  // A token bucket per source address (bounded table).
  bool allowSource(const Endpoint& from) {
    MonoTime now = clock_.now();
    std::string key = sourceKey(from);
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
      if (buckets_.size() >= kMaxBuckets) {
        for (auto b = buckets_.begin(); b != buckets_.end();) {
          b = now - b->second.last > std::chrono::seconds(1) ? buckets_.erase(b) : std::next(b);
        }
        if (buckets_.size() >= kMaxBuckets) return false;
      }
      it = buckets_.emplace(key, Bucket{kBurst, now}).first;
    }
    Bucket& b = it->second;
    double rate = opts_.handshakes_per_source_per_second;
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(kBurst, b.tokens + elapsed * rate);
    b.last = now;
    if (b.tokens < 1.0) return false;
    b.tokens -= 1.0;
    return true;
  }

  // --- sessions --------------------------------------------------------------------------------

  void installCurrent(Peer& p, std::unique_ptr<Keypair> kp) {
    // Initiator: the new session is used at once; the old current stays as previous so that
    // packets still in flight under it are accepted.
    if (p.next) {
      releaseKeypair(p.previous);
      p.previous = std::move(p.next);
      releaseKeypair(p.current);
    } else {
      releaseKeypair(p.previous);
      p.previous = std::move(p.current);
    }
    p.current = std::move(kp);
  }

  void installNext(Peer& p, std::unique_ptr<Keypair> kp) {
    // Responder: the new session waits until the initiator uses it.
    releaseKeypair(p.next);
    releaseKeypair(p.previous);
    p.next = std::move(kp);
  }

  void promoteNext(Peer& p) {
    releaseKeypair(p.previous);
    p.previous = std::move(p.current);
    p.current = std::move(p.next);
  }

  void releaseKeypair(std::unique_ptr<Keypair>& kp) {
    if (!kp) return;
    indices_.erase(kp->local_index);
    kp.reset();
  }

  void dropHandshakeIndex(Peer& p) {
    if (p.hs.local_index == 0) return;
    auto it = indices_.find(p.hs.local_index);
    if (it != indices_.end() && it->second.keypair == nullptr && it->second.peer == &p) {
      indices_.erase(it);
    }
  }

  void expireSessions(Peer& p) {
    dropHandshakeIndex(p);
    p.hs.zero();
    releaseKeypair(p.previous);
    releaseKeypair(p.current);
    releaseKeypair(p.next);
  }

  uint32_t newIndex() {
    for (;;) {
      uint32_t i;
      randomBytes(&i, sizeof(i));
      if (i != 0 && indices_.find(i) == indices_.end()) return i;
    }
  }

  void keepKeyFreshSending(Peer& p, const Keypair& kp) {
    if (kp.initiator && (kp.send_counter > opts_.timing.rekey_after_messages ||
                         clock_.now() - kp.created > opts_.timing.rekey_after_time)) {
      sendInitiation(p, false);
    }
  }

  void keepKeyFreshReceiving(Peer& p, const Keypair& kp) {
    if (p.sent_last_minute_handshake || &kp != p.current.get() || !kp.initiator) return;
    const Timing& t = opts_.timing;
    if (clock_.now() - kp.created > t.reject_after_time - t.keepalive_timeout - t.rekey_timeout) {
      p.sent_last_minute_handshake = true;
      sendInitiation(p, false);
    }
  }

  // --- timers (whitepaper §6; the event names follow it) ---------------------------------------

  Duration jitter() {
    uint32_t r;
    randomBytes(&r, sizeof(r));
    auto max = static_cast<uint32_t>(opts_.timing.max_jitter.count());
    return std::chrono::milliseconds(max == 0 ? 0 : r % max);
  }

  void dataSent(Peer& p) {
    if (!p.new_handshake->armed()) {
      Peer* pp = &p;
      p.new_handshake->schedule(
          opts_.timing.keepalive_timeout + opts_.timing.rekey_timeout + jitter(),
          [this, pp] { sendInitiation(*pp, false); });
    }
  }

  void dataReceived(Peer& p) {
    if (p.send_keepalive->armed()) {
      p.need_another_keepalive = true;
      return;
    }
    scheduleKeepalive(p);
  }

  void scheduleKeepalive(Peer& p) {
    Peer* pp = &p;
    p.send_keepalive->schedule(opts_.timing.keepalive_timeout, [this, pp] {
      sendKeepalive(*pp);
      if (pp->need_another_keepalive) {
        pp->need_another_keepalive = false;
        scheduleKeepalive(*pp);
      }
    });
  }

  void anyAuthenticatedPacketSent(Peer& p) { p.send_keepalive->cancel(); }
  void anyAuthenticatedPacketReceived(Peer& p) { p.new_handshake->cancel(); }

  void anyAuthenticatedPacketTraversal(Peer& p) {
    if (p.persistent_keepalive > Duration::zero()) {
      Peer* pp = &p;
      p.persistent->schedule(p.persistent_keepalive, [this, pp] {
        if (pp->persistent_keepalive > Duration::zero()) sendKeepalive(*pp);
      });
    }
  }

  void handshakeInitiated(Peer& p) {
    Peer* pp = &p;
    p.retransmit->schedule(opts_.timing.rekey_timeout + jitter(), [this, pp] { retransmit(*pp); });
  }

  void retransmit(Peer& p) {
    const Timing& t = opts_.timing;
    int max_attempts = static_cast<int>(t.rekey_attempt_time / t.rekey_timeout);
    if (p.attempts > max_attempts) {
      // Give up: what waited for the session is dropped; keys go after a while.
      p.send_keepalive->cancel();
      for (size_t i = 0; i < p.staged.size(); ++i) drop(Drop::kHandshakeGaveUp);
      p.staged.clear();
      if (!p.zero_keys->armed()) scheduleZeroKeys(p);
      return;
    }
    p.attempts++;
    sendInitiation(p, true);
  }

  void handshakeComplete(Peer& p) {
    p.retransmit->cancel();
    p.attempts = 0;
    p.sent_last_minute_handshake = false;
    p.last_handshake = clock_.systemNow();
    if (p.handshakes > 0) counters_.rekeys++;
    p.handshakes++;
    counters_.handshakes_completed++;
  }

  void sessionDerived(Peer& p) { scheduleZeroKeys(p); }

  void scheduleZeroKeys(Peer& p) {
    Peer* pp = &p;
    p.zero_keys->schedule(opts_.timing.reject_after_time * 3, [this, pp] { expireSessions(*pp); });
  }

  int64_t wallNanos() const { return toUnixNanos(clock_.systemNow()); }

  void drop(Drop d) { counters_.drops[static_cast<size_t>(d)]++; }

  struct Entry {
    Peer* peer;
    Keypair* keypair;  // null: a handshake in progress
  };
  struct Bucket {
    double tokens;
    MonoTime last;
  };
  static constexpr size_t kMaxBuckets = 4096;
  static constexpr double kBurst = 5.0;

  Clock& clock_;
  DeviceOptions opts_;
  Io io_;
  Identity id_;
  bool has_key_ = false;
  std::map<PublicKey, std::unique_ptr<Peer>> peers_;
  std::unordered_map<uint32_t, Entry> indices_;
  AllowedIps allowed_;
  Counters counters_;
  std::vector<uint8_t> buf_;
  Bytes32 cookie_secret_{};
  MonoTime cookie_secret_time_{};
  MonoTime load_window_start_{};
  uint32_t load_count_ = 0;
  MonoTime under_load_until_{};
  std::unordered_map<std::string, Bucket> buckets_;

  friend class Device;
  friend class Peer;
};

Peer::Peer(Device::Impl& d)
    : retransmit(d.clock_.createTimer()),
      send_keepalive(d.clock_.createTimer()),
      new_handshake(d.clock_.createTimer()),
      zero_keys(d.clock_.createTimer()),
      persistent(d.clock_.createTimer()) {}

// (The timers cancel themselves as they go.)
Peer::~Peer() {
  for (auto& s : staged) wipe(s.data(), s.size());
}

Device::Device(Clock& clock, DeviceOptions options, Io io)
    : impl_(std::make_unique<Impl>(clock, options, std::move(io))) {}

Device::~Device() = default;

void Device::setPrivateKey(const Secret& key) {
  impl_->setPrivateKey(key);
}
const PublicKey& Device::publicKey() const {
  return impl_->id_.public_key;
}
bool Device::hasPrivateKey() const {
  return impl_->has_key_;
}
const Secret& Device::privateKey() const {
  return impl_->id_.private_key;
}

std::optional<Secret> Device::presharedKey(const PublicKey& peer) const {
  auto it = impl_->peers_.find(peer);
  if (it == impl_->peers_.end()) return std::nullopt;
  return it->second->remote.preshared_key;
}
Status Device::setPeer(const PeerConfig& config) {
  return impl_->setPeer(config);
}

bool Device::removePeer(const PublicKey& key) {
  bool had = impl_->peers_.count(key) != 0;
  impl_->removePeer(key);
  return had;
}

void Device::removeAllPeers() {
  while (!impl_->peers_.empty()) impl_->removePeer(impl_->peers_.begin()->first);
}

void Device::receive(const Endpoint& from, std::span<uint8_t> datagram) {
  impl_->receive(from, datagram);
}

void Device::send(std::span<const uint8_t> ip_packet) {
  impl_->send(ip_packet);
}

bool Device::retryHandshake(const PublicKey& key, Duration min_age) {
  auto it = impl_->peers_.find(key);
  if (it == impl_->peers_.end()) return false;
  Peer& p = *it->second;
  if (!p.sent_any || p.current || impl_->clock_.now() - p.last_initiation_sent < min_age) {
    return false;
  }
  initiateHandshake(key);
  return true;
}

void Device::initiateHandshake(const PublicKey& key) {
  auto it = impl_->peers_.find(key);
  if (it == impl_->peers_.end()) return;
  Peer& p = *it->second;
  p.last_initiation_sent = MonoTime{};  // on demand: not subject to the rate limit
  p.sent_any = false;
  impl_->sendInitiation(p, false);
}

namespace {

PeerStatus statusOf(const PublicKey& key, const Peer& p, std::vector<Prefix> allowed_ips) {
  PeerStatus s;
  s.public_key = key;
  s.endpoint = p.endpoint;
  s.allowed_ips = std::move(allowed_ips);
  s.last_handshake = p.last_handshake;
  s.rx_bytes = p.rx_bytes;
  s.tx_bytes = p.tx_bytes;
  s.rx_packets = p.rx_packets;
  s.tx_packets = p.tx_packets;
  s.handshakes = p.handshakes;
  s.persistent_keepalive = p.persistent_keepalive;
  s.has_session = p.current != nullptr;
  return s;
}

}  // namespace

std::vector<PeerStatus> Device::peers() const {
  // One walk of the allowed-IPs tries for all peers.
  std::map<const Peer*, std::vector<Prefix>> allowed;
  impl_->allowed_.forEach([&](const Prefix& p, const Peer* owner) { allowed[owner].push_back(p); });
  std::vector<PeerStatus> out;
  for (const auto& [k, p] : impl_->peers_)
    out.push_back(statusOf(k, *p, std::move(allowed[p.get()])));
  return out;
}

std::optional<PeerStatus> Device::peer(const PublicKey& key) const {
  auto it = impl_->peers_.find(key);
  if (it == impl_->peers_.end()) return std::nullopt;
  return statusOf(key, *it->second, impl_->allowed_.prefixesOf(it->second.get()));
}

const Counters& Device::counters() const {
  return impl_->counters_;
}
bool Device::underLoad() const {
  return impl_->underLoad();
}

size_t Device::sessionCount() const {
  size_t n = 0;
  for (const auto& [i, e] : impl_->indices_) n += e.keypair != nullptr ? 1 : 0;
  return n;
}

}  // namespace wsa::wg
