#include "ssh/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ssh/channel.h"
#include "ssh/server_impl.h"
#include "wsa/net/address.h"

namespace wsa::ssh {

const char* kindName(SessionKind k) {
  switch (k) {
    case SessionKind::kSsh:
      return "ssh";
    case SessionKind::kVscode:
      return "vscode";
    case SessionKind::kJetbrains:
      return "jetbrains";
    default:
      return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(SshServer::Impl& server, ssh_bind bind, int fd, std::string peer,
                       uint64_t id, bool require_auth)
    : server_(server),
      bind_(bind),
      fd_(fd),
      peer_(std::move(peer)),
      id_(id),
      require_auth_(require_auth) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    char host[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      peer_port_ = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      peer_port_ = ntohs(a->sin6_port);
    }
    peer_ip_ = host;
  }
  if (peer_ip_.empty()) {
    // Not an IP socket (an overlay connection bridged through a socketpair): the peer string
    // is the overlay address, "ip:port" or "[ip6]:port".
    if (auto a = net::parseListenAddress(peer_); a && !a->is_unix && !a->host.empty()) {
      peer_ip_ = a->host;
      peer_port_ = a->port;
    } else {
      peer_ip_ = "127.0.0.1";
    }
  }
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Connection::~Connection() {
  channels_.clear();
  for (auto& [fd, addr] : listeners_) ::close(fd);
  if (agent_listener_ >= 0) ::close(agent_listener_);
  if (x11_listener_ >= 0) ::close(x11_listener_);
  for (auto& p : pending_opens_) {
    ssh_channel_free(p.ch);
    ::close(p.sock);
  }
  if (!agent_socket_dir_.empty()) {
    ::unlink(agent_socket_.c_str());
    ::rmdir(agent_socket_dir_.c_str());
  }
  if (event_ != nullptr) {
    // ssh_event_free does not free the handles ssh_event_add_fd allocated.
    for (auto& [fd, ev] : registered_) ssh_event_remove_fd(event_, fd);
    registered_.clear();
    ssh_event_free(event_);
  }
  if (session_ != nullptr) ssh_free(session_);
  for (int fd : to_close_) ::close(fd);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Connection::requestClose() {
  close_requested_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

std::vector<pid_t> Connection::liveGroups() const {
  std::lock_guard l(groups_mu_);
  return groups_;
}

void Connection::watch(int fd, short events, std::function<void(int)> handler) {
  if (fd < 0) return;
  if (events == 0) {
    desired_.erase(fd);
  } else {
    desired_[fd] = Watch{events, std::move(handler)};
  }
}

void Connection::closeLater(int fd) {
  if (fd >= 0) to_close_.push_back(fd);
}

void Connection::syncWatches() {
  for (auto it = registered_.begin(); it != registered_.end();) {
    auto d = desired_.find(it->first);
    if (d == desired_.end() || d->second.events != it->second) {
      ssh_event_remove_fd(event_, it->first);
      it = registered_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [fd, w] : desired_) {
    if (registered_.count(fd) > 0) continue;
    if (ssh_event_add_fd(event_, fd, w.events, &Connection::onFd, this) == SSH_OK) {
      registered_[fd] = w.events;
    }
  }
  for (int fd : to_close_) {
    if (registered_.count(fd) > 0) {
      ssh_event_remove_fd(event_, fd);
      registered_.erase(fd);
    }
    desired_.erase(fd);
    ::close(fd);
  }
  to_close_.clear();
}

int Connection::onFd(socket_t fd, int revents, void* self) {
  auto* c = static_cast<Connection*>(self);
  auto it = c->desired_.find(fd);
  if (it == c->desired_.end()) return 0;
  auto handler = it->second.handler;  // the handler may change watches
  if (handler) handler(revents);
  return 0;
}

int Connection::authPubkey(const char* user, ssh_key key, char state) {
  const auto& keys = server_.authorizedKeys();
  if (!keys || !keys->contains(key)) return SSH_AUTH_DENIED;
  if (state == SSH_PUBLICKEY_STATE_NONE) return SSH_AUTH_SUCCESS;  // the probe
  if (state == SSH_PUBLICKEY_STATE_VALID) {
    authenticated_ = true;
    user_ = user != nullptr ? user : "";
    return SSH_AUTH_SUCCESS;
  }
  return SSH_AUTH_DENIED;
}

int Connection::onMessage(ssh_session, ssh_message msg, void* self) {
  auto* c = static_cast<Connection*>(self);
  int type = ssh_message_type(msg);
  if (type == SSH_REQUEST_CHANNEL_OPEN) return c->handleChannelOpen(msg) ? 0 : 1;
  if (type == SSH_REQUEST_GLOBAL) return c->handleGlobal(msg) ? 0 : 1;
  return 1;  // let libssh answer with its default
}

void Connection::sendKeepalive() {
  ssh_send_keepalive(session_);
}

void Connection::run() {
  auto log = server_.log();
  session_ = ssh_new();
  long timeout_s = 30;
  ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &timeout_s);
  if (server_.acceptFd(bind_, session_, fd_) != SSH_OK) {
    log->warn("ssh: accepting {} failed: {}", peer_, ssh_get_error(bind_));
    server_.counters().failed_connections++;
    finished_ = true;
    return;
  }
  ssh_callbacks_init(&server_cb_);
  server_cb_.userdata = this;
  server_cb_.auth_none_function = [](ssh_session, const char* user, void* u) {
    auto* c = static_cast<Connection*>(u);
    if (c->require_auth_) return static_cast<int>(SSH_AUTH_DENIED);
    c->authenticated_ = true;
    c->user_ = user != nullptr ? user : "";
    return static_cast<int>(SSH_AUTH_SUCCESS);
  };
  server_cb_.auth_pubkey_function = [](ssh_session, const char* user, struct ssh_key_struct* key,
                                       char state, void* u) {
    return static_cast<Connection*>(u)->authPubkey(user, key, state);
  };
  server_cb_.channel_open_request_session_function = [](ssh_session, void* u) {
    return static_cast<Connection*>(u)->openSession();
  };
  ssh_set_server_callbacks(session_, &server_cb_);
  ssh_set_message_callback(session_, &Connection::onMessage, this);
  if (ssh_handle_key_exchange(session_) != SSH_OK) {
    log->info("ssh: key exchange with {} failed: {}", peer_, ssh_get_error(session_));
    server_.counters().failed_connections++;
    finished_ = true;
    return;
  }
  ssh_set_auth_methods(session_, require_auth_
                                     ? SSH_AUTH_METHOD_PUBLICKEY
                                     : (SSH_AUTH_METHOD_NONE | SSH_AUTH_METHOD_PUBLICKEY));
  event_ = ssh_event_new();
  ssh_event_add_session(event_, session_);
  ssh_set_blocking(session_, 0);
  watch(wake_fd_, POLLIN, [this](int) {
    uint64_t v;
    (void)!::read(wake_fd_, &v, sizeof(v));
  });
  syncWatches();
  auto keepalive_every =
      std::chrono::duration_cast<std::chrono::milliseconds>(server_.options().max_timeout / 3);
  auto next_keepalive = std::chrono::steady_clock::now() + keepalive_every;
  bool closing = false;
  auto close_deadline = std::chrono::steady_clock::time_point::max();
  while (true) {
    int rc = ssh_event_dopoll(event_, 200);
    drivePendingOpens();
    for (auto it = channels_.begin(); it != channels_.end();) {
      it = (*it)->poll() ? std::next(it) : channels_.erase(it);
    }
    syncWatches();
    int status = ssh_get_status(session_);
    if (rc == SSH_ERROR || (status & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) break;
    if (close_requested_ && !closing) {
      closing = true;
      close_deadline = std::chrono::steady_clock::now() + server_.options().shutdown_grace;
      for (auto& ch : channels_) ch->forceClose();
    }
    if (closing && (channels_.empty() || std::chrono::steady_clock::now() > close_deadline)) break;
    auto now = std::chrono::steady_clock::now();
    if (keepalive_every.count() > 0 && now >= next_keepalive) {
      sendKeepalive();
      next_keepalive = now + keepalive_every;
    }
  }
  for (auto& ch : channels_) ch->forceClose();
  channels_.clear();
  syncWatches();
  ssh_disconnect(session_);
  finished_ = true;
}

}  // namespace wsa::ssh
