// Port forwarding: direct-tcpip channels (-L), tcpip-forward requests and the
// forwarded-tcpip channels they lead to (-R), and the channels the connection opens towards the
// client (forwarded-tcpip, auth-agent, x11) until they are confirmed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ssh/channel.h"
#include "ssh/connection.h"
#include "ssh/relay.h"
#include "ssh/server_impl.h"

namespace wsa::ssh {

namespace {

void setNonBlocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

}  // namespace

// Channels carrying a byte stream to a socket: direct-tcpip, forwarded-tcpip, and friends.
class Connection::ForwardChannel final : public Connection::Channel {
 public:
  ForwardChannel(Connection& c, ssh_channel ch, int sock) : Channel(c), ch_(ch), sock_(sock) {
    ssh_callbacks_init(&cb_);
    cb_.userdata = this;
    cb_.channel_data_function = [](ssh_session, ssh_channel, void* d, uint32_t len, int, void* u) {
      return static_cast<ForwardChannel*>(u)->relay_->onChannelData(static_cast<const char*>(d),
                                                                    len);
    };
    cb_.channel_eof_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<ForwardChannel*>(u)->relay_->onChannelEof();
    };
    cb_.channel_close_function = [](ssh_session, ssh_channel, void* u) {
      static_cast<ForwardChannel*>(u)->closed_by_peer_ = true;
    };
    cb_.channel_write_wontblock_function = [](ssh_session, ssh_channel, uint32_t, void* u) {
      static_cast<ForwardChannel*>(u)->relay_->onWindowOpened();
      return 0;
    };
    ssh_set_channel_callbacks(ch_, &cb_);
    relay_ = std::make_unique<Relay>(c, ch_, sock_, -1, sock_);
  }
  ~ForwardChannel() override {
    relay_.reset();
    if (ch_ != nullptr) {
      ssh_remove_channel_callbacks(ch_, &cb_);
      ssh_channel_free(ch_);
    }
  }
  bool poll() override {
    relay_->onWindowOpened();
    if (!eof_sent_ && relay_->outputDone()) {
      eof_sent_ = true;
      if (!ssh_channel_is_closed(ch_)) ssh_channel_send_eof(ch_);
    }
    if (eof_sent_ && ssh_channel_is_eof(ch_) && !closing_) closing_ = true;
    if (closed_by_peer_) closing_ = true;
    if (closing_ && !close_sent_) {
      relay_->closeFds();
      close_sent_ = ssh_channel_is_closed(ch_) || ssh_channel_close(ch_) != SSH_AGAIN;
    }
    return !(close_sent_ && closed_by_peer_) && !(close_sent_ && ssh_channel_is_closed(ch_));
  }
  void forceClose() override {
    if (!ssh_channel_is_closed(ch_)) ssh_channel_close(ch_);
    closed_by_peer_ = true;
  }

 private:
  ssh_channel ch_;
  int sock_;
  struct ssh_channel_callbacks_struct cb_ {};
  std::unique_ptr<Relay> relay_;
  bool eof_sent_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool closed_by_peer_ = false;
};

bool Connection::handleChannelOpen(ssh_message msg) {
  if (ssh_message_subtype(msg) != SSH_CHANNEL_DIRECT_TCPIP) return false;
  if (server_.options().block_local_port_forwarding || close_requested_) {
    ssh_message_reply_default(msg);  // "administratively prohibited"
    return true;
  }
  std::string host = ssh_message_channel_request_open_destination(msg);
  int port = ssh_message_channel_request_open_destination_port(msg);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  // Resolution blocks this connection's thread only (not the agent, not other connections).
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    ssh_message_reply_default(msg);
    return true;
  }
  int sock = -1;
  for (addrinfo* a = res; a != nullptr && sock < 0; a = a->ai_next) {
    int s = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (s < 0) continue;
    // A bounded, blocking connect: local targets answer at once.
    timeval tv{10, 0};
    ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (::connect(s, a->ai_addr, a->ai_addrlen) == 0) {
      sock = s;
    } else {
      ::close(s);
    }
  }
  ::freeaddrinfo(res);
  if (sock < 0) {
    ssh_message_reply_default(msg);
    return true;
  }
  int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setNonBlocking(sock);
  ssh_channel ch = ssh_message_channel_request_open_reply_accept(msg);
  if (ch == nullptr) {
    ::close(sock);
    return true;
  }
  channels_.push_back(std::make_unique<ForwardChannel>(*this, ch, sock));
  return true;
}

bool Connection::handleGlobal(ssh_message msg) {
  int sub = ssh_message_subtype(msg);
  if (sub == SSH_GLOBAL_REQUEST_TCPIP_FORWARD) {
    if (server_.options().block_reverse_port_forwarding || close_requested_) {
      ssh_message_reply_default(msg);
      return true;
    }
    std::string addr = ssh_message_global_request_address(msg);
    int port = ssh_message_global_request_port(msg);
    std::string bind_host = (addr.empty() || addr == "localhost") ? "127.0.0.1" : addr;
    if (addr == "0.0.0.0" || addr == "*") bind_host = "0.0.0.0";
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    addrinfo* res = nullptr;
    if (::getaddrinfo(bind_host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) {
      ssh_message_reply_default(msg);
      return true;
    }
    int s = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bool ok = s >= 0 && ::bind(s, res->ai_addr, res->ai_addrlen) == 0 && ::listen(s, 64) == 0;
    ::freeaddrinfo(res);
    if (!ok) {
      if (s >= 0) ::close(s);
      ssh_message_reply_default(msg);
      return true;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len);
    int bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                         : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    listeners_[s] = addr + ":" + std::to_string(port) + "|" + std::to_string(bound);
    watch(s, POLLIN, [this, s](int) { acceptForwarded(s); });
    ssh_message_global_request_reply_success(msg, static_cast<uint16_t>(bound));
    return true;
  }
  if (sub == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD) {
    std::string addr = ssh_message_global_request_address(msg);
    int port = ssh_message_global_request_port(msg);
    std::string prefix = addr + ":" + std::to_string(port) + "|";
    for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
      if (it->second.rfind(prefix, 0) == 0) {
        watch(it->first, 0, nullptr);
        closeLater(it->first);
        listeners_.erase(it);
        ssh_message_global_request_reply_success(msg, 0);
        return true;
      }
    }
    ssh_message_reply_default(msg);
    return true;
  }
  return false;
}

void Connection::acceptForwarded(int listen_fd) {
  auto it = listeners_.find(listen_fd);
  if (it == listeners_.end()) return;
  while (true) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int s =
        ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (s < 0) return;
    char host[INET6_ADDRSTRLEN] = "127.0.0.1";
    int oport = 0;
    if (ss.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host, sizeof(host));
      oport = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, host, sizeof(host));
      oport = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
    const std::string& spec = it->second;
    std::string addr = spec.substr(0, spec.rfind(':'));
    int port = std::stoi(spec.substr(spec.rfind(':') + 1, spec.find('|') - spec.rfind(':') - 1));
    pending_opens_.push_back(PendingOpen{PendingOpen::kForwardedTcpip, ssh_channel_new(session_), s,
                                         addr, port, host, oport});
  }
}

void Connection::drivePendingOpens() {
  for (auto it = pending_opens_.begin(); it != pending_opens_.end();) {
    int rc = SSH_ERROR;
    switch (it->kind) {
      case PendingOpen::kForwardedTcpip:
        rc = ssh_channel_open_reverse_forward(it->ch, it->addr.c_str(), it->port, it->orig.c_str(),
                                              it->orig_port);
        break;
      case PendingOpen::kAuthAgent:
        rc = ssh_channel_open_auth_agent(it->ch);
        break;
      case PendingOpen::kX11:
        rc = ssh_channel_open_x11(it->ch, it->orig.c_str(), it->orig_port);
        break;
    }
    if (rc == SSH_AGAIN) {
      ++it;
      continue;
    }
    if (rc == SSH_OK) {
      channels_.push_back(std::make_unique<ForwardChannel>(*this, it->ch, it->sock));
    } else {
      ssh_channel_free(it->ch);
      ::close(it->sock);
    }
    it = pending_opens_.erase(it);
  }
}

}  // namespace wsa::ssh
