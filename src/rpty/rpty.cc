#include "wsa/rpty/rpty.h"

#include <google/protobuf/util/time_util.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/write.hpp>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "wsa/common/logging.h"
#include "wsa/common/strings.h"
#include "wsa/common/uuid.h"
#include "wsa/net/address.h"
#include "wsa/net/listener.h"
#include "wsa/term/screen.h"

namespace wsa::rpty {

namespace v1 = wsa::agent::v1;
using google::protobuf::util::TimeUtil;
using json = nlohmann::json;

void withTerminalEnv(std::map<std::string, std::string>* env) {
  (*env)["TERM"] = "xterm-256color";
  auto get = [&](const char* k) -> std::string {
    auto it = env->find(k);
    return it == env->end() ? "" : it->second;
  };
  std::string effective = get("LC_ALL");
  if (effective.empty()) effective = get("LC_CTYPE");
  if (effective.empty()) effective = get("LANG");
  std::string lower = toLower(effective);
  bool utf8 = lower.find("utf-8") != std::string::npos || lower.find("utf8") != std::string::npos;
  if (!utf8 && get("LC_ALL").empty()) (*env)["LC_CTYPE"] = "C.UTF-8";
}

class Session;
class Conn;

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  Impl(asio::io_context& io, Clock& clock, Options o, Hooks h)
      : io_(io), clock_(clock), opts_(o), hooks_(std::move(h)), log_(logging::get("rpty")) {}
  void attach(const std::shared_ptr<Conn>& c, const std::string& id, const std::string& command,
              term::PtySize size, bool size_given);
  void error(const std::string& what) {
    if (hooks_.error) hooks_.error(what);
  }
  void report(const std::string& id, v1::Connection::Action action, const std::string& ip, int code,
              const std::string& reason) {
    if (!hooks_.report) return;
    v1::ReportConnectionRequest r;
    auto* c = r.mutable_connection();
    c->set_id(id);
    c->set_action(action);
    c->set_type(v1::Connection::TYPE_RECONNECTING_PTY);
    c->set_ip(ip);
    c->set_status_code(code);
    c->set_reason(reason);
    *c->mutable_timestamp() = TimeUtil::GetCurrentTime();
    hooks_.report(std::move(r));
  }
  void sessionEnded(const std::string& id) { sessions_.erase(id); }
  void serve(net::ByteStreamPtr stream);

  asio::io_context& io_;
  Clock& clock_;
  Options opts_;
  Hooks hooks_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::set<std::shared_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  bool stopped_ = false;
  size_t attached_ = 0;
};

// One client connection: init frame, then input messages; output queued and written in order.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(std::shared_ptr<Server::Impl> srv, net::ByteStreamPtr stream)
      : srv_(std::move(srv)), stream_(std::move(stream)), timer_(srv_->clock_.createTimer()) {
    ip_ = stream_->remoteAddress();
    if (auto colon = ip_.rfind(':'); colon != std::string::npos) ip_ = ip_.substr(0, colon);
    if (!ip_.empty() && ip_.front() == '[') ip_ = ip_.substr(1, ip_.size() - 2);
    if (ip_.empty() || ip_ == "unix") ip_ = "127.0.0.1";
  }

  void start() {
    auto weak = weak_from_this();
    timer_->schedule(srv_->opts_.init_timeout, [weak] {
      if (auto self = weak.lock()) self->fail("bad_init", "no init frame in time");
    });
    readExactly(2, [this](const std::string& len) {
      size_t n = static_cast<unsigned char>(len[0]) |
                 (static_cast<size_t>(static_cast<unsigned char>(len[1])) << 8);
      if (n == 0 || n > srv_->opts_.max_init_bytes) {
        fail("bad_init", "init frame length " + std::to_string(n) + " is out of range");
        return;
      }
      readExactly(n, [this](const std::string& body) { onInit(body); });
    });
  }

  void send(std::string_view bytes) {
    if (closed_ || bytes.empty()) return;
    if (queued_ + bytes.size() > srv_->opts_.max_client_queue) {
      fail("too_slow", "the client does not read its output fast enough");
      return;
    }
    queued_ += bytes.size();
    out_.emplace_back(bytes);
    if (!writing_) writeNext();
  }

  // The session ended: deliver what is queued, then close (the client sees EOF).
  void finish(int code, const std::string& reason) {
    if (closed_) return;
    end_code_ = code;
    end_reason_ = reason;
    finishing_ = true;
    if (!writing_) close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_->cancel();
    stream_->close();
    detach();
    srv_->conns_.erase(shared_from_this());
  }

  void fail(const std::string& what, const std::string& why) {
    if (closed_) return;
    srv_->log_->info("reconnecting PTY connection from {} closed: {}", ip_, why);
    srv_->error(what);
    end_code_ = 1;
    end_reason_ = why;
    close();
  }

  std::shared_ptr<Session> session_;
  std::string conn_id_;
  const std::string& ip() const { return ip_; }

 private:
  void detach();

  void readExactly(size_t n, std::function<void(const std::string&)> done) {
    if (buf_.size() >= n) {
      std::string out = buf_.substr(0, n);
      buf_.erase(0, n);
      done(out);
      return;
    }
    auto self = shared_from_this();
    stream_->asyncReadSome(
        tmp_, sizeof(tmp_),
        [self, n, done = std::move(done)](std::error_code ec, size_t got) mutable {
          if (self->closed_) return;
          if (ec) {
            self->fail("bad_init", "connection closed before the init frame");
            return;
          }
          self->buf_.append(self->tmp_, got);
          self->readExactly(n, std::move(done));
        });
  }

  void onInit(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      fail("bad_init", "init frame is not a JSON object");
      return;
    }
    auto field = [&](const char* lower, const char* upper) -> const json* {
      if (j.contains(lower)) return &j[lower];
      if (j.contains(upper)) return &j[upper];
      return nullptr;
    };
    const json* id = field("id", "ID");
    const json* height = field("height", "Height");
    const json* width = field("width", "Width");
    const json* command = field("command", "Command");
    if (id == nullptr || !id->is_string() || id->get<std::string>().empty() ||
        id->get<std::string>().size() > 128) {
      fail("bad_init", "init frame needs an id (a string of 1 to 128 characters)");
      return;
    }
    for (const json* dim : {height, width}) {
      if (dim != nullptr && (!dim->is_number_unsigned() || dim->get<uint64_t>() > 1000)) {
        fail("bad_init", "init frame height and width must be numbers from 0 to 1000");
        return;
      }
    }
    if (command != nullptr && !command->is_string()) {
      fail("bad_init", "init frame command must be a string");
      return;
    }
    term::PtySize size;
    if (height != nullptr && height->get<int>() > 0) size.rows = height->get<int>();
    if (width != nullptr && width->get<int>() > 0) size.cols = width->get<int>();
    bool size_given =
        height != nullptr && width != nullptr && height->get<int>() > 0 && width->get<int>() > 0;
    timer_->cancel();
    srv_->attach(shared_from_this(), id->get<std::string>(),
                 command != nullptr ? command->get<std::string>() : "", size, size_given);
    if (!closed_) readInput();
  }

  void readInput();
  void onInputBytes(std::string_view data);
  void onMessage(const std::string& text);

  void writeNext() {
    if (out_.empty()) {
      writing_ = false;
      if (finishing_) close();
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    current_ = std::move(out_.front());
    out_.pop_front();
    stream_->asyncWrite(current_.data(), current_.size(), [self](std::error_code ec, size_t) {
      if (self->closed_) return;
      self->queued_ -= self->current_.size();
      if (ec) {
        self->end_code_ = 1;
        self->end_reason_ = "write failed";
        self->close();
        return;
      }
      self->writeNext();
    });
  }

  std::shared_ptr<Server::Impl> srv_;
  net::ByteStreamPtr stream_;
  std::unique_ptr<Timer> timer_;
  std::string ip_;
  char tmp_[16384];
  std::string buf_;
  // Input message splitting.
  std::string msg_;
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
  // Output.
  std::deque<std::string> out_;
  std::string current_;
  size_t queued_ = 0;
  bool writing_ = false;
  bool finishing_ = false;
  bool closed_ = false;

 public:
  int end_code_ = 0;
  std::string end_reason_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Server::Impl> srv, std::string id, term::Child child, term::PtySize size)
      : srv_(std::move(srv)),
        id_(std::move(id)),
        child_(child),
        master_(srv_->io_, child.master),
        pidfd_(srv_->io_, child.pidfd),
        model_(term::ScreenModel::Options{size.rows, size.cols, srv_->opts_.scrollback_bytes}),
        idle_(srv_->clock_.createTimer()),
        kill_timer_(srv_->clock_.createTimer()),
        drain_timer_(srv_->clock_.createTimer()) {}

  void start() {
    readOutput();
    auto self = shared_from_this();
    pidfd_.async_wait(asio::posix::stream_descriptor::wait_read, [self](std::error_code ec) {
      if (ec) return;
      int st = 0;
      if (::waitpid(self->child_.pid, &st, WNOHANG) != self->child_.pid) return;
      self->exited_ = true;
      self->exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      self->kill_timer_->cancel();
      self->maybeEnd();
    });
  }

  // The session ends once the process has exited and its output is read (EIO: every writer of
  // the terminal is gone). Whichever comes second ends it at once; if only one has happened, a
  // short grace lets the other arrive — a background job keeping the terminal open, or a
  // program that closed its terminal but keeps running, does not hold the session for more.
  void maybeEnd() {
    if (ended_) return;
    if (exited_ && output_done_) {
      end("process exited");
      return;
    }
    if (drain_timer_->armed()) return;
    auto weak = weak_from_this();
    drain_timer_->schedule(std::chrono::seconds(1), [weak] {
      if (auto s = weak.lock()) s->end(s->exited_ ? "process exited" : "terminal closed");
    });
  }

  // A client that gives its size resizes the session first, so the redraw fits its terminal.
  void attach(const std::shared_ptr<Conn>& c, std::optional<term::PtySize> size) {
    attached_.insert(c.get());
    srv_->attached_++;
    idle_->cancel();
    if (size && (size->rows != model_.rows() || size->cols != model_.cols())) {
      resize(size->rows, size->cols);
    }
    if (!model_.pristine()) c->send(model_.redraw());
  }
  void detach(Conn* c) {
    if (attached_.erase(c) == 0) return;
    srv_->attached_--;
    if (attached_.empty() && !ended_) {
      auto weak = weak_from_this();
      idle_->schedule(srv_->opts_.idle_timeout, [weak] {
        if (auto s = weak.lock()) s->end("no client attached for the idle timeout");
      });
    }
  }

  void input(const std::string& data) {
    if (ended_ || data.empty()) return;
    if (input_size_ + data.size() > srv_->opts_.max_input_queue) {
      srv_->error("input_overflow");
      return;  // like a terminal whose buffer is full: the keystrokes are lost
    }
    input_size_ += data.size();
    input_.push_back(data);
    if (!writing_) writeInput();
  }
  void resize(int rows, int cols) {
    if (rows <= 0 || cols <= 0 || ended_) return;
    term::PtySize s{rows, cols, 0, 0};
    term::setWindowSize(master_.native_handle(), s);
    model_.resize(rows, cols);
  }

  // Ends the session; clients are told `code` (1 when the agent ends a running process for its
  // own reasons, as on shutdown) unless the process exited by itself.
  void end(const std::string& reason, int code_if_running = 0) {
    if (ended_) return;
    ended_ = true;
    idle_->cancel();
    drain_timer_->cancel();
    // Logged before the shell is signalled: whoever watches the shell die
    // finds the reason already written.
    srv_->log_->info("reconnecting PTY session {} ended: {}", id_, reason);
    if (!exited_) {
      ::kill(-child_.pid, SIGHUP);
      auto weak = weak_from_this();
      kill_timer_->schedule(std::chrono::seconds(2), [weak] {
        if (auto s = weak.lock(); s && !s->exited_) ::kill(-s->child_.pid, SIGKILL);
      });
    }
    std::error_code ec;
    master_.close(ec);
    auto conns = attached_;
    for (auto* c : conns) c->finish(exited_ ? exit_code_ : code_if_running, reason);
    srv_->sessionEnded(id_);
    // Keep watching the process until it is reaped.
    if (!exited_) {
      auto self = shared_from_this();
      pidfd_.async_wait(asio::posix::stream_descriptor::wait_read, [self](std::error_code) {
        ::waitpid(self->child_.pid, nullptr, WNOHANG);
        self->exited_ = true;
        self->kill_timer_->cancel();
      });
    }
  }

  const std::string& id() const { return id_; }

 private:
  void readOutput() {
    auto self = shared_from_this();
    master_.async_read_some(asio::buffer(buf_, sizeof(buf_)), [self](std::error_code ec, size_t n) {
      if (n > 0) {
        std::string_view data(self->buf_, n);
        self->model_.feed(data);
        for (auto* c : std::set<Conn*>(self->attached_)) c->send(data);
      }
      if (ec) {
        if (ec == asio::error::operation_aborted || self->ended_) return;
        self->output_done_ = true;  // EIO (or another read error): no more output
        self->maybeEnd();
        return;
      }
      self->readOutput();
    });
  }
  void writeInput() {
    if (input_.empty() || ended_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    current_ = std::move(input_.front());
    input_.pop_front();
    auto self = shared_from_this();
    asio::async_write(master_, asio::buffer(current_), [self](std::error_code ec, size_t) {
      self->input_size_ -= self->current_.size();
      if (ec) {
        self->writing_ = false;
        return;
      }
      self->writeInput();
    });
  }

  std::shared_ptr<Server::Impl> srv_;
  std::string id_;
  term::Child child_;
  asio::posix::stream_descriptor master_;
  asio::posix::stream_descriptor pidfd_;
  term::ScreenModel model_;
  std::unique_ptr<Timer> idle_;
  std::unique_ptr<Timer> kill_timer_;
  std::unique_ptr<Timer> drain_timer_;
  std::set<Conn*> attached_;
  char buf_[16384];
  std::deque<std::string> input_;
  std::string current_;
  size_t input_size_ = 0;
  bool writing_ = false;
  bool exited_ = false;
  bool output_done_ = false;
  bool ended_ = false;
  int exit_code_ = 0;
};

void Conn::detach() {
  if (session_) {
    session_->detach(this);
    srv_->report(conn_id_, v1::Connection::ACTION_DISCONNECT, ip_, end_code_, end_reason_);
    session_.reset();
  }
}

void Conn::readInput() {
  if (!buf_.empty()) {
    std::string pending = std::move(buf_);
    buf_.clear();
    onInputBytes(pending);
    if (closed_) return;
  }
  auto self = shared_from_this();
  stream_->asyncReadSome(tmp_, sizeof(tmp_), [self](std::error_code ec, size_t n) {
    if (self->closed_) return;
    if (ec) {
      self->close();  // the client went away; the session stays for the idle timeout
      return;
    }
    self->onInputBytes(std::string_view(self->tmp_, n));
    if (!self->closed_) self->readInput();
  });
}

void Conn::onInputBytes(std::string_view data) {
  // Splits a stream of concatenated JSON objects without parsing them twice.
  for (char c : data) {
    if (depth_ == 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c != '{') {
        fail("bad_input", "input is not a stream of JSON objects");
        return;
      }
    }
    msg_ += c;
    if (msg_.size() > srv_->opts_.max_message_bytes) {
      fail("bad_input", "an input message is larger than " +
                            std::to_string(srv_->opts_.max_message_bytes) + " bytes");
      return;
    }
    if (in_string_) {
      if (escape_) {
        escape_ = false;
      } else if (c == '\\') {
        escape_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == '"') in_string_ = true;
    if (c == '{') ++depth_;
    if (c == '}' && --depth_ == 0) {
      std::string text = std::move(msg_);
      msg_.clear();
      onMessage(text);
      if (closed_) return;
    }
  }
}

void Conn::onMessage(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    fail("bad_input", "an input message is not valid JSON");
    return;
  }
  if (!session_) return;
  if (j.contains("data")) {
    if (!j["data"].is_string()) {
      fail("bad_input", "input data must be a string");
      return;
    }
    session_->input(j["data"].get<std::string>());
  }
  int h = j.value("height", 0);
  int w = j.value("width", 0);
  if (h > 0 && w > 0 && h <= 1000 && w <= 1000) session_->resize(h, w);
}

void Server::Impl::attach(const std::shared_ptr<Conn>& c, const std::string& id,
                          const std::string& command, term::PtySize size, bool size_given) {
  auto it = sessions_.find(id);
  std::shared_ptr<Session> s;
  if (it != sessions_.end()) {
    s = it->second;
  } else {
    if (sessions_.size() >= opts_.max_sessions) {
      c->fail("too_many_sessions", "too many reconnecting PTY sessions");
      return;
    }
    auto spec = hooks_.command(command, size);
    if (!spec) {
      c->fail("create_command", spec.error());
      return;
    }
    spec->pty = true;
    spec->size = size;
    auto child = term::spawnChild(*spec);
    if (!child) {
      c->fail("spawn", child.error());
      return;
    }
    s = std::make_shared<Session>(shared_from_this(), id, *child, size);
    sessions_[id] = s;
    s->start();
    log_->info("reconnecting PTY session {} started ({}), pid {}", id,
               command.empty() ? "login shell" : command, child->pid);
  }
  c->session_ = s;
  c->conn_id_ = newUuid();
  report(c->conn_id_, v1::Connection::ACTION_CONNECT, c->ip(), 0, "");
  if (hooks_.connection_opened) hooks_.connection_opened();
  s->attach(c, size_given ? std::optional<term::PtySize>(size) : std::nullopt);
}

void Server::Impl::serve(net::ByteStreamPtr stream) {
  if (stopped_ || conns_.size() >= opts_.max_connections) {
    if (!stopped_) {
      log_->warn("reconnecting PTY: refusing a connection: {} connections open", conns_.size());
      error("too_many_connections");
    }
    stream->close();
    return;
  }
  auto c = std::make_shared<Conn>(shared_from_this(), std::move(stream));
  conns_.insert(c);
  c->start();
}

Server::Server(asio::io_context& io, Clock& clock, Options options, Hooks hooks)
    : impl_(std::make_shared<Impl>(io, clock, options, std::move(hooks))) {}

Server::~Server() {
  shutdown();
}

Result<std::string> Server::listen(const std::string& address) {
  return net::listenStreamsTo(impl_->io_, address, "reconnecting PTY", std::weak_ptr<Impl>(impl_),
                              impl_->listeners_);
}

void Server::serve(net::ByteStreamPtr stream) {
  impl_->serve(std::move(stream));
}

void Server::stopAccepting() {
  impl_->stopped_ = true;
  for (auto& l : impl_->listeners_) l->close();
}

void Server::shutdown() {
  if (!impl_) return;
  stopAccepting();
  auto sessions = impl_->sessions_;
  for (auto& [id, s] : sessions) s->end("agent shutting down", 1);
  auto conns = impl_->conns_;
  for (auto& c : conns) c->close();
}

size_t Server::sessions() const {
  return impl_->sessions_.size();
}
size_t Server::attached() const {
  return impl_->attached_;
}

}  // namespace wsa::rpty
