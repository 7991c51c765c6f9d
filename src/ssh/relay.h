#pragma once
// The byte relay behind every channel of a connection (relay.cc).

#include <libssh/libssh.h>

#include <cstdint>
#include <string>

namespace wsa::ssh {

class Connection;

// Relays bytes between an SSH channel and file descriptors with bounded buffers both ways.
// read side: fd → channel (stdout, optional stderr); write side: channel → fd.
class Relay {
 public:
  Relay(Connection& conn, ssh_channel ch, int read_fd, int err_fd, int write_fd);
  ~Relay();
  // channel → fd; returns how many bytes were taken (the rest stays in libssh's window).
  int onChannelData(const char* data, uint32_t len);
  void onChannelEof();
  // fd → channel
  void onReadable(int fd);
  void onWritable();
  void onWindowOpened();
  // Both read fds reached EOF and everything read was written to the channel.
  bool outputDone() const;
  void closeFds();
  // Reads what is left in the fds without blocking (PTY after the shell exited).
  void drainNow();
  int writeFd() const { return write_fd_; }

 private:
  void flushOut();
  void flushIn();
  void updateWatch();
  Connection& conn_;
  ssh_channel ch_;
  int read_fd_;
  int err_fd_;
  int write_fd_;
  std::string out_;  // from read_fd_, to the channel
  std::string err_;  // from err_fd_, to the channel's stderr
  std::string in_;   // from the channel, to write_fd_
  bool read_eof_ = false;
  bool err_eof_ = false;
  bool read_watched_ = false;
  bool err_watched_ = false;
  bool write_watched_ = false;
  bool channel_eof_ = false;
  bool same_fd_ = false;  // sockets and PTY masters read and write one fd
  bool flushing_out_ = false;
  bool flushing_in_ = false;
};

}  // namespace wsa::ssh
