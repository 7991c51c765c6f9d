#pragma once
// The channels of a connection: "session" channels (session_channel.cc) and byte streams to
// sockets (forwarding.cc) share this interface, through which the connection's loop drives them.

#include "ssh/connection.h"

namespace wsa::ssh {

class Connection::Channel {
 public:
  explicit Channel(Connection& c) : conn_(c) {}
  virtual ~Channel() = default;
  // Called after every poll: advance state machines. Returns false once the channel is gone.
  virtual bool poll() = 0;
  virtual void forceClose() = 0;

 protected:
  Connection& conn_;
};

}  // namespace wsa::ssh
