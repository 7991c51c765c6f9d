#include "wsa/control/coordinate_stream.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <mutex>

#include "wsa/control/channel.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"

namespace wsa::control {

namespace {

namespace ov = overlay::v1;

// Writes are queued (bounded) and issued one at a time; reads are posted to the owner.
class Stream final : public CoordinateStream,
                     public grpc::ClientBidiReactor<ov::CoordinateRequest, ov::CoordinateResponse> {
 public:
  explicit Stream(Callbacks cb) : cb_(std::move(cb)) {}

  void begin(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
             std::shared_ptr<Stream> self) {
    self_ = std::move(self);
    stub_ = ov::Overlay::NewStub(channel);
    prepareContext(ctx_, token);
    if (cb_.on_context) cb_.on_context(&ctx_);
    stub_->async()->Coordinate(&ctx_, this);
    // Writes start from the owner's thread, outside reactions: the hold keeps OnDone away until
    // reading has ended and no write can start any more.
    AddHold();
    StartRead(&resp_);
    StartCall();
  }

  void send(const ov::CoordinateRequest& request) override {
    std::lock_guard l(mu_);
    if (finished_) return;
    if (queue_.size() >= kMaxQueued) {
      ctx_.TryCancel();  // a peer that cannot keep up starts over with a fresh view
      return;
    }
    queue_.push_back(request);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }
  void cancel() override { ctx_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    std::lock_guard l(mu_);
    queue_.pop_front();
    if (!ok || queue_.empty()) {
      writing_ = false;
      return;
    }
    StartWrite(&queue_.front());
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        std::lock_guard l(mu_);
        finished_ = true;
      }
      RemoveHold();
      return;
    }
    if (cb_.on_response) {
      cb_.post([cb = cb_.on_response, r = resp_]() mutable { cb(std::move(r)); });
    }
    resp_.Clear();
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    // Let go of the channel before saying we are done: the owner may drop its own reference as
    // soon as it hears, and the last reference to a grpc::Channel must not be dropped on a gRPC
    // callback thread (its destructor releases the callback completion queue that thread runs
    // on; gRPC 1.51 then frees it twice — seen as an ASan double free at wsa's exit).
    stub_.reset();
    auto done = std::move(cb_.on_done);
    if (done) done(s.error_code(), s.error_message());
    // Posted responses hold their own copy of on_response. The callbacks may (indirectly) own
    // this stream: let them go before the stream's own reference.
    cb_ = {};
    auto keep = std::move(self_);
  }

 private:
  Callbacks cb_;
  std::shared_ptr<Stream> self_;
  std::unique_ptr<ov::Overlay::Stub> stub_;
  grpc::ClientContext ctx_;
  ov::CoordinateResponse resp_;
  std::mutex mu_;
  std::deque<ov::CoordinateRequest> queue_;
  bool writing_ = false;
  bool finished_ = false;
};

}  // namespace

std::shared_ptr<CoordinateStream> CoordinateStream::start(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& token, Callbacks callbacks) {
  auto s = std::make_shared<Stream>(std::move(callbacks));
  s->begin(channel, token, s);
  return s;
}

}  // namespace wsa::control
