#include "wsa/ssh/ssh_server.h"

#include <arpa/inet.h>
#include <google/protobuf/util/time_util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include "ssh/connection.h"
#include "ssh/server_impl.h"
#include "wsa/common/logging.h"
#include "wsa/common/uuid.h"
#include "wsa/net/address.h"

namespace wsa::ssh {

namespace v1 = wsa::agent::v1;
using google::protobuf::util::TimeUtil;

struct SshServer::Impl::Adopted {
  Adopted(asio::io_context& io, int fd) : pidfd(io, fd) {}
  asio::posix::stream_descriptor pidfd;
  bool group = false;
};

SshServer::Impl::Impl(asio::io_context& io, SshServer& owner, SshServerOptions options,
                      SshServer::Hooks hooks, KeyPtr host_key)
    : io_(io),
      owner_(owner),
      options_(std::move(options)),
      hooks_(std::move(hooks)),
      log_(logging::get("ssh")) {
  fingerprint_ = ssh::fingerprint(host_key.get());
  bind_ = ssh_bind_new();
  bool no = false;
  ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no);
  // The bind takes ownership of the key.
  ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_IMPORT_KEY, host_key.release());
}

SshServer::Impl::~Impl() {
  shutdown();
  if (bind_ != nullptr) ssh_bind_free(bind_);
}

std::shared_ptr<const SessionContext> SshServer::Impl::contextSnapshot() const {
  std::lock_guard l(ctx_mu_);
  return ctx_;
}

void SshServer::Impl::setContext(std::shared_ptr<const SessionContext> ctx) {
  std::lock_guard l(ctx_mu_);
  ctx_ = std::move(ctx);
}

std::shared_ptr<const AuthorizedKeys> SshServer::Impl::authorizedKeys() {
  std::lock_guard l(keys_mu_);
  if (options_.authorized_keys_path.empty()) return keys_;
  struct stat st {};
  int64_t mtime = ::stat(options_.authorized_keys_path.c_str(), &st) == 0
                      ? static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec
                      : 0;
  if (!keys_ || mtime != keys_mtime_) {
    std::vector<std::string> warnings;
    keys_ = std::make_shared<AuthorizedKeys>(
        AuthorizedKeys::load(options_.authorized_keys_path, &warnings));
    keys_mtime_ = mtime;
    for (const auto& w : warnings) log_->warn("authorized keys: {}", w);
  }
  return keys_;
}

int SshServer::Impl::acceptFd(ssh_bind bind, ssh_session session, int fd) {
  std::lock_guard l(bind_mu_);
  return ssh_bind_accept_fd(bind, session, fd);
}

void SshServer::Impl::sessionStarted(SessionKind kind) {
  auto& c = counters();
  c.sessions_total++;
  if (kind == SessionKind::kSsh) c.sessions_ssh++;
  if (kind == SessionKind::kVscode) c.sessions_vscode++;
  if (kind == SessionKind::kJetbrains) c.sessions_jetbrains++;
}

void SshServer::Impl::sessionEnded(SessionKind kind) {
  auto& c = counters();
  if (kind == SessionKind::kSsh) c.sessions_ssh--;
  if (kind == SessionKind::kVscode) c.sessions_vscode--;
  if (kind == SessionKind::kJetbrains) c.sessions_jetbrains--;
}

namespace {
v1::Connection::Type connType(SessionKind k) {
  switch (k) {
    case SessionKind::kSsh:
      return v1::Connection::TYPE_SSH;
    case SessionKind::kVscode:
      return v1::Connection::TYPE_VSCODE;
    case SessionKind::kJetbrains:
      return v1::Connection::TYPE_JETBRAINS;
    default:
      return v1::Connection::TYPE_UNSPECIFIED;
  }
}
}  // namespace

std::string SshServer::Impl::reportConnect(SessionKind kind, const std::string& ip) {
  std::string id = newUuid();
  v1::ReportConnectionRequest r;
  auto* c = r.mutable_connection();
  c->set_id(id);
  c->set_action(v1::Connection::ACTION_CONNECT);
  c->set_type(connType(kind));
  c->set_ip(ip);
  *c->mutable_timestamp() = TimeUtil::GetCurrentTime();
  if (hooks_.post && hooks_.report) {
    hooks_.post([report = hooks_.report, r = std::move(r)]() mutable { report(std::move(r)); });
  }
  return id;
}

void SshServer::Impl::reportDisconnect(const std::string& id, SessionKind kind,
                                       const std::string& ip, int code, const std::string& reason) {
  if (id.empty()) return;
  v1::ReportConnectionRequest r;
  auto* c = r.mutable_connection();
  c->set_id(id);
  c->set_action(v1::Connection::ACTION_DISCONNECT);
  c->set_type(connType(kind));
  c->set_ip(ip);
  c->set_status_code(code);
  c->set_reason(reason);
  *c->mutable_timestamp() = TimeUtil::GetCurrentTime();
  if (hooks_.post && hooks_.report) {
    hooks_.post([report = hooks_.report, r = std::move(r)]() mutable { report(std::move(r)); });
  }
}

void SshServer::Impl::adoptChild(pid_t pid, int pidfd, bool group) {
  auto adopt = [this, pid, pidfd, group] {
    if (pidfd < 0) {
      ::waitpid(pid, nullptr, WNOHANG);
      return;
    }
    auto a = std::make_shared<Adopted>(io_, pidfd);
    a->group = group;
    adopted_[pid] = a;
    a->pidfd.async_wait(asio::posix::stream_descriptor::wait_read,
                        [this, pid, a](std::error_code ec) {
                          ::waitpid(pid, nullptr, WNOHANG);
                          if (!ec) adopted_.erase(pid);
                        });
  };
  if (hooks_.post) {
    hooks_.post(adopt);
  } else {
    ::close(pidfd);
  }
}

void SshServer::Impl::localAddress(int fd, std::string* ip, uint16_t* port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  char host[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    *port = ntohs(a->sin6_port);
  }
  if (host[0] != '\0') *ip = host;
}

Result<std::string> SshServer::Impl::listen(const std::string& address) {
  net::Listener::Handlers h;
  h.on_fd = [this](int fd, std::string peer) { serveFd(fd, std::move(peer)); };
  auto l = net::Listener::open(io_, address, std::move(h), {false, "SSH server"});
  if (!l) return makeError(l.error());
  std::string bound = (*l)->address();
  listeners_.push_back(std::move(*l));
  return bound;
}

void SshServer::Impl::serveFd(int fd, std::string peer, bool from_overlay) {
  reapFinished();
  if (!accepting_ || connections_.size() >= options_.max_connections) {
    log_->warn("ssh: refusing connection from {} ({})", peer,
               accepting_ ? "too many connections" : "shutting down");
    ::close(fd);
    return;
  }
  // Keepalive at the TCP level too: a peer that vanished is noticed after max_timeout.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  int idle = static_cast<int>(std::max<int64_t>(1, options_.max_timeout.count() / 3));
  int cnt = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
  uint64_t id = next_id_++;
  auto conn = std::make_unique<Connection>(*this, bind_, fd, peer, id,
                                           options_.require_auth && !from_overlay);
  Connection* raw = conn.get();
  counters().connections++;
  Running r;
  r.conn = std::move(conn);
  r.thread = std::thread([this, raw] {
    raw->run();
    counters().connections--;
    // Let the loop reap the thread.
    if (hooks_.post) hooks_.post([this] { reapFinished(); });
  });
  connections_[id] = std::move(r);
}

void SshServer::Impl::reapFinished() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second.conn->finished()) {
      if (it->second.thread.joinable()) it->second.thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void SshServer::Impl::stopAccepting() {
  accepting_ = false;
  for (auto& l : listeners_) l->close();
}

void SshServer::Impl::shutdown() {
  stopAccepting();
  for (auto& [id, r] : connections_) {
    // Non-PTY commands still running get SIGHUP, as OpenSSH's server does on exit.
    for (pid_t g : r.conn->liveGroups()) ::kill(-g, SIGHUP);
    r.conn->requestClose();
  }
  for (auto& [id, r] : connections_) {
    if (r.thread.joinable()) r.thread.join();
  }
  connections_.clear();
  for (auto& [pid, a] : adopted_) {
    if (a->group) ::kill(-pid, SIGHUP);
    ::waitpid(pid, nullptr, WNOHANG);
    std::error_code ec;
    a->pidfd.close(ec);
  }
  adopted_.clear();
}

Result<std::unique_ptr<SshServer>> SshServer::create(asio::io_context& io, SshServerOptions options,
                                                     Hooks hooks) {
  ssh_init();
  auto key = loadOrCreateHostKey(options.host_key_path);
  if (!key) return makeError(key.error());
  std::unique_ptr<SshServer> s(new SshServer());
  s->options_ = options;
  s->impl_ = std::make_unique<Impl>(io, *s, std::move(options), std::move(hooks), std::move(*key));
  return s;
}

SshServer::~SshServer() {
  impl_.reset();
}
Result<std::string> SshServer::listen(const std::string& address) {
  return impl_->listen(address);
}
void SshServer::serveFd(int fd, std::string peer, bool from_overlay) {
  impl_->serveFd(fd, std::move(peer), from_overlay);
}
void SshServer::setContext(std::shared_ptr<const SessionContext> ctx) {
  impl_->setContext(std::move(ctx));
}
std::shared_ptr<const SessionContext> SshServer::context() const {
  return impl_->contextSnapshot();
}
void SshServer::stopAccepting() {
  impl_->stopAccepting();
}
void SshServer::shutdown() {
  impl_->shutdown();
}
std::string SshServer::hostKeyFingerprint() const {
  return impl_->fingerprint();
}

}  // namespace wsa::ssh
