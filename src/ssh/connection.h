#pragma once
// One SSH connection, served by its own thread running libssh's event loop.
//
// connection.cc: the loop, authentication and dispatch; the channel kinds each in their own
// file: session_channel.cc (shell, exec, sftp, PTY, env, signals), forwarding.cc (direct-tcpip,
// tcpip-forward and the channels opened towards the client), agent_x11.cc (agent and X11
// forwarding); relay.h: the byte relay the channels share; channel.h: their interface.

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "wsa/ssh/ssh_server.h"
#include "wsa/term/child.h"

namespace wsa::ssh {

using term::Child;
using term::ChildSpec;
using term::PtySize;
using term::setWindowSize;
using term::spawnChild;

class Connection {
 public:
  Connection(SshServer::Impl& server, ssh_bind bind, int fd, std::string peer, uint64_t id,
             bool require_auth);
  ~Connection();
  // The thread body: key exchange, authentication, channels, until the client leaves or the
  // server closes the connection.
  void run();
  // From any thread: ask the connection to close (graceful=false closes at once).
  void requestClose();
  bool finished() const { return finished_; }
  uint64_t id() const { return id_; }
  // Process groups of non-PTY commands still running (signalled on server shutdown).
  std::vector<pid_t> liveGroups() const;

  // --- used by channels and relays ---
  // Asks for `handler(revents)` when fd has `events` (0 stops watching). Applied between polls.
  void watch(int fd, short events, std::function<void(int)> handler);
  // Closes fd once it is no longer watched (between polls).
  void closeLater(int fd);
  ssh_session session() const { return session_; }
  SshServer::Impl& server() { return server_; }
  const std::string& peer() const { return peer_; }
  const std::string& peerIp() const { return peer_ip_; }
  uint16_t peerPort() const { return peer_port_; }

  class Channel;
  class SessionChannel;
  class ForwardChannel;

 private:
  static int onMessage(ssh_session s, ssh_message msg, void* self);
  static int onFd(socket_t fd, int revents, void* self);
  int authPubkey(const char* user, ssh_key key, char state);
  ssh_channel openSession();
  bool handleChannelOpen(ssh_message msg);
  bool handleGlobal(ssh_message msg);
  void acceptForwarded(int listen_fd);
  void drivePendingOpens();
  static int listenUnix(const std::string& path);
  void enableAgentForwarding();
  void enableX11(bool single, const std::string& proto, const std::string& cookie, uint32_t screen);
  void sendKeepalive();

  SshServer::Impl& server_;
  ssh_bind bind_;
  int fd_;
  std::string peer_;
  std::string peer_ip_;
  uint16_t peer_port_ = 0;
  uint64_t id_;
  bool require_auth_;
  ssh_session session_ = nullptr;
  ssh_event event_ = nullptr;
  struct ssh_server_callbacks_struct server_cb_ {};
  int wake_fd_ = -1;
  std::atomic<bool> close_requested_{false};
  std::atomic<bool> finished_{false};
  bool authenticated_ = false;
  std::string user_;
  void syncWatches();
  struct Watch {
    short events = 0;
    std::function<void(int)> handler;
  };
  std::map<int, Watch> desired_;
  std::map<int, short> registered_;
  std::vector<int> to_close_;
  std::map<int, std::string> listeners_;  // remote-forward listener fd → "addr:port|bound"
  // Channels we open towards the client (forwarded-tcpip, auth-agent, x11) until confirmed.
  struct PendingOpen {
    enum Kind { kForwardedTcpip, kAuthAgent, kX11 } kind;
    ssh_channel ch;
    int sock;
    std::string addr;
    int port;
    std::string orig;
    int orig_port;
  };
  std::vector<PendingOpen> pending_opens_;
  // Agent forwarding and X11 for this connection's sessions.
  std::string agent_socket_;
  std::string agent_socket_dir_;
  std::string x11_display_;
  int agent_listener_ = -1;
  int x11_listener_ = -1;
  std::vector<std::unique_ptr<Channel>> channels_;
  mutable std::mutex groups_mu_;
  std::vector<pid_t> groups_;
};

}  // namespace wsa::ssh
