#include "wsa/control/relay_stream.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <mutex>

#include "wsa/control/channel.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"

namespace wsa::control {

namespace {

namespace ov = overlay::v1;

class Stream final : public RelayStream,
                     public grpc::ClientBidiReactor<ov::RelayRequest, ov::RelayResponse> {
 public:
  Stream(Callbacks cb, size_t max_queued)
      : cb_(std::move(cb)), max_(std::max<size_t>(max_queued, 1)) {}

  void begin(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
             const Key& hello, std::shared_ptr<Stream> self) {
    self_ = std::move(self);
    stub_ = ov::Overlay::NewStub(channel);
    prepareContext(ctx_, token);
    if (cb_.on_context) cb_.on_context(&ctx_);
    stub_->async()->Relay(&ctx_, this);
    hello_.set_hello_key(std::string(hello.begin(), hello.end()));
    if (!cb_.ticket.empty()) hello_.mutable_ticket()->ParseFromString(cb_.ticket);
    // The hold keeps OnDone away until reading has ended and no write can start any more.
    AddHold();
    writing_ = true;
    StartWrite(&hello_);
    StartRead(&resp_);
    StartCall();
  }

  bool send(const Key& to, std::span<const uint8_t> datagram) override {
    std::lock_guard l(mu_);
    if (!ready_ || finished_) {
      ++stats_.dropped_not_ready;
      return false;
    }
    if (static_cast<size_t>(pending_.packets_size()) >= max_) {
      ++stats_.dropped_queue_full;
      return false;
    }
    auto* p = pending_.add_packets();
    p->set_peer_key(std::string(to.begin(), to.end()));
    p->set_payload(reinterpret_cast<const char*>(datagram.data()), datagram.size());
    if (!writing_) writeNextLocked();
    return true;
  }

  void setTicket(const std::string& ticket) override {
    std::lock_guard l(mu_);
    if (finished_) return;
    if (!pending_.mutable_ticket()->ParseFromString(ticket)) {
      pending_.clear_ticket();
      return;
    }
    if (!writing_) writeNextLocked();
  }

  void cancel() override { ctx_.TryCancel(); }
  bool ready() const override {
    std::lock_guard l(mu_);
    return ready_ && !finished_;
  }
  RelayStreamStats stats() const override {
    std::lock_guard l(mu_);
    RelayStreamStats s = stats_;
    s.queued = static_cast<size_t>(pending_.packets_size());
    return s;
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard l(mu_);
    stats_.packets_sent += static_cast<uint64_t>(inflight_.packets_size());
    inflight_.Clear();
    if (!ok || finished_) {
      writing_ = false;
      return;
    }
    writeNextLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        std::lock_guard l(mu_);
        finished_ = true;
        pending_.Clear();
      }
      RemoveHold();
      return;
    }
    // Reads are one at a time: acked_ needs no lock.
    bool first = !acked_;
    acked_ = true;
    if (first) {
      // Ready from the owner's point of view once on_ready runs there; sends before that
      // count as not ready.
      cb_.post([self = self_, this] {
        {
          std::lock_guard l(mu_);
          ready_ = true;
        }
        if (cb_.on_ready) cb_.on_ready();
        (void)self;
      });
    }
    if (resp_.packets_size() > 0) {
      Packets packets;
      packets.reserve(static_cast<size_t>(resp_.packets_size()));
      for (auto& p : *resp_.mutable_packets()) {
        if (p.peer_key().size() != 32) continue;
        Key k;
        std::copy(p.peer_key().begin(), p.peer_key().end(), k.begin());
        packets.emplace_back(k, std::move(*p.mutable_payload()));
      }
      {
        std::lock_guard l(mu_);
        stats_.packets_received += packets.size();
      }
      cb_.post([self = self_, this, packets = std::move(packets)]() mutable {
        if (cb_.on_packets) cb_.on_packets(std::move(packets));
        (void)self;
      });
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
    // Posted callbacks hold their own reference; this was the stream's.
    auto keep = std::move(self_);
  }

 private:
  // Moves up to kMaxPacketsPerMessage pending packets into the message in flight.
  void writeNextLocked() {
    if (pending_.packets_size() == 0 && !pending_.has_ticket()) {
      writing_ = false;
      return;
    }
    inflight_.Clear();
    if (pending_.packets_size() <= static_cast<int>(kMaxPacketsPerMessage)) {
      inflight_.Swap(&pending_);
    } else {
      if (pending_.has_ticket()) inflight_.mutable_ticket()->Swap(pending_.mutable_ticket());
      pending_.clear_ticket();
      auto* from = pending_.mutable_packets();
      for (int i = 0; i < static_cast<int>(kMaxPacketsPerMessage); ++i) {
        inflight_.add_packets()->Swap(from->Mutable(i));
      }
      from->DeleteSubrange(0, static_cast<int>(kMaxPacketsPerMessage));
    }
    writing_ = true;
    StartWrite(&inflight_);
  }

  Callbacks cb_;
  const size_t max_;
  std::shared_ptr<Stream> self_;
  std::unique_ptr<ov::Overlay::Stub> stub_;
  grpc::ClientContext ctx_;
  ov::RelayRequest hello_;
  ov::RelayResponse resp_;
  mutable std::mutex mu_;
  ov::RelayRequest pending_;
  ov::RelayRequest inflight_;
  RelayStreamStats stats_;
  bool writing_ = false;
  bool acked_ = false;
  bool ready_ = false;
  bool finished_ = false;
};

}  // namespace

std::shared_ptr<RelayStream> RelayStream::start(const std::shared_ptr<grpc::Channel>& channel,
                                                const std::string& token, const Key& hello_key,
                                                Callbacks callbacks, size_t max_queued) {
  auto s = std::make_shared<Stream>(std::move(callbacks), max_queued);
  s->begin(channel, token, hello_key, s);
  return s;
}

}  // namespace wsa::control
