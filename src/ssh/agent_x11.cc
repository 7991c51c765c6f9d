// Agent forwarding (auth-agent-req: a unix socket per connection, SSH_AUTH_SOCK) and X11
// forwarding (x11-req: a display on 127.0.0.1:6010.., DISPLAY, the client's cookie in xauth).
// Connections to either become channels opened towards the client (forwarding.cc).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "ssh/connection.h"
#include "ssh/server_impl.h"
#include "wsa/exec/command.h"

namespace wsa::ssh {

int Connection::listenUnix(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    ::close(s);
    return -1;
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(s, 64) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

void Connection::enableAgentForwarding() {
  if (server_.options().block_agent_forwarding || !agent_socket_.empty()) return;
  char tmpl[] = "/tmp/wsa-ssh-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  agent_socket_dir_ = tmpl;
  agent_socket_ =
      agent_socket_dir_ + "/agent." + std::to_string(::getpid()) + "." + std::to_string(id_);
  int s = listenUnix(agent_socket_);
  if (s < 0) {
    server_.log()->warn("ssh: agent forwarding: cannot listen on {}", agent_socket_);
    ::rmdir(agent_socket_dir_.c_str());
    agent_socket_.clear();
    agent_socket_dir_.clear();
    return;
  }
  ::chmod(agent_socket_.c_str(), 0600);
  agent_listener_ = s;
  watch(s, POLLIN, [this, s](int) {
    while (true) {
      int c = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) return;
      pending_opens_.push_back(
          PendingOpen{PendingOpen::kAuthAgent, ssh_channel_new(session_), c, "", 0, "", 0});
    }
  });
}

void Connection::enableX11(bool single, const std::string& proto, const std::string& cookie,
                           uint32_t screen) {
  (void)single;
  if (server_.options().block_x11_forwarding || !x11_display_.empty()) return;
  // Display numbers 10..209 on 127.0.0.1:6010..6209, as OpenSSH's X11DisplayOffset.
  int listener = -1;
  int display = -1;
  for (int d = 10; d < 210 && listener < 0; ++d) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(6000 + d));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 && ::listen(s, 16) == 0) {
      listener = s;
      display = d;
    } else {
      ::close(s);
    }
  }
  if (listener < 0) {
    server_.log()->warn("ssh: X11 forwarding: no free display between 10 and 209");
    return;
  }
  // The xauth entry lets X clients in the session authenticate with the client's cookie.
  std::string disp = std::to_string(display) + "." + std::to_string(screen);
  auto ctx = server_.contextSnapshot();
  std::string xauth = "/usr/bin/xauth";
  if (::access(xauth.c_str(), X_OK) == 0 && !proto.empty() && !cookie.empty()) {
    std::string cmd =
        "remove unix:" + disp + "\nadd unix:" + disp + " " + proto + " " + cookie + "\n";
    int in[2];
    if (::pipe2(in, O_CLOEXEC) == 0) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::dup2(in[0], 0);
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        if (ctx) {
          ::setenv("HOME", ctx->command->user.home.c_str(), 1);
          if (::chdir(ctx->command->user.home.c_str()) != 0) _exit(1);
        }
        ::execl(xauth.c_str(), "xauth", "-q", "-", static_cast<char*>(nullptr));
        _exit(127);
      }
      ::close(in[0]);
      (void)!::write(in[1], cmd.data(), cmd.size());
      ::close(in[1]);
      if (pid > 0) ::waitpid(pid, nullptr, 0);
    }
  }
  x11_display_ = "localhost:" + disp;
  x11_listener_ = listener;
  watch(listener, POLLIN, [this, listener](int) {
    while (true) {
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      int c = ::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len,
                        SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) return;
      char host[INET_ADDRSTRLEN] = "127.0.0.1";
      ::inet_ntop(AF_INET, &peer.sin_addr, host, sizeof(host));
      pending_opens_.push_back(PendingOpen{PendingOpen::kX11, ssh_channel_new(session_), c, "", 0,
                                           host, ntohs(peer.sin_port)});
    }
  });
}

}  // namespace wsa::ssh
