#pragma once
// In-process gRPC servers for the control streams' tests: a bidi reactor base whose writes are
// queued and issued one at a time (finishing once they are done), and a server on a loopback
// port with a channel to it.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

namespace wsa::control::test {

template <typename Req, typename Resp>
class QueuedReactor : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  void OnWriteDone(bool ok) override {
    std::lock_guard l(mu_);
    queue_.pop_front();
    if (ok && !queue_.empty() && !finishing_) {
      this->StartWrite(&queue_.front());
      return;
    }
    writing_ = false;
    if (finishing_ && !finished_) {
      finished_ = true;
      this->Finish(status_);
    }
  }
  void OnCancel() override { finishWhenIdle({grpc::StatusCode::CANCELLED, "cancelled"}); }
  void OnDone() override { delete this; }

 protected:
  void write(Resp r) {
    std::lock_guard l(mu_);
    if (finishing_) return;
    queue_.push_back(std::move(r));
    if (!writing_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }
  // Finishes once the write in flight is done (at once if none). Idempotent.
  void finishWhenIdle(grpc::Status s) {
    std::lock_guard l(mu_);
    if (finishing_) return;
    finishing_ = true;
    status_ = std::move(s);
    if (!writing_) {
      finished_ = true;
      this->Finish(status_);
    }
  }

 private:
  std::mutex mu_;
  std::deque<Resp> queue_;
  bool writing_ = false, finishing_ = false, finished_ = false;
  grpc::Status status_;
};

// `service` on 127.0.0.1 (any port), shut down (bounded) on destruction.
class LoopbackServer {
 public:
  explicit LoopbackServer(grpc::Service* service) {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service);
    server_ = b.BuildAndStart();
    if (server_) {
      channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials());
    }
  }
  ~LoopbackServer() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  bool ok() const { return server_ != nullptr; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace wsa::control::test
