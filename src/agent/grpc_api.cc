#include "agent/grpc_api.h"

#include <grpcpp/grpcpp.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <condition_variable>
#include <mutex>
#include <set>

#include "wsa/agent/v1/agent_service.grpc.pb.h"

namespace wsa::agent {

std::string RpcStatus::text() const {
  static const char* names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  std::string n = code >= 0 && code <= 16 ? names[code] : std::to_string(code);
  return message.empty() ? n : n + ": " + message;
}

namespace {

RpcStatus toRpc(const grpc::Status& s) {
  return {s.error_code(), s.error_message()};
}

// Where gRPC threads hand completions: the loop while it is alive, nowhere after drain().
// Counts calls in flight so that drain() can wait for them.
class LoopTarget {
 public:
  explicit LoopTarget(asio::io_context& io) : io_(&io) {}
  void begin() {
    std::lock_guard l(mu_);
    ++inflight_;
  }
  // Posts `f` (if the loop is still the target) and marks one call finished.
  template <typename F>
  void end(F&& f) {
    std::lock_guard l(mu_);
    if (io_ != nullptr) asio::post(*io_, std::forward<F>(f));
    --inflight_;
    cv_.notify_all();
  }
  // Posts without finishing a call (stream events).
  template <typename F>
  void post(F&& f) {
    std::lock_guard l(mu_);
    if (io_ != nullptr) asio::post(*io_, std::forward<F>(f));
  }
  void drain(std::chrono::milliseconds timeout) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, timeout, [&] { return inflight_ == 0; });
    io_ = nullptr;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  asio::io_context* io_;
  int inflight_ = 0;
};

// Tracks contexts of calls in flight so cancelAll can reach them.
class CallRegistry {
 public:
  void add(grpc::ClientContext* c) {
    std::lock_guard l(mu_);
    if (cancelled_) c->TryCancel();
    calls_.insert(c);
  }
  void remove(grpc::ClientContext* c) {
    std::lock_guard l(mu_);
    calls_.erase(c);
  }
  void cancelAll() {
    std::lock_guard l(mu_);
    cancelled_ = true;
    for (auto* c : calls_) c->TryCancel();
  }

 private:
  std::mutex mu_;
  std::set<grpc::ClientContext*> calls_;
  bool cancelled_ = false;
};

class Events final : public grpc::ClientReadReactor<v1::ServerEvent>, public EventStream {
 public:
  Events(std::shared_ptr<LoopTarget> loop, std::shared_ptr<CallRegistry> reg,
         std::function<void(v1::ServerEvent)> on_event,
         std::function<void(const RpcStatus&)> on_done)
      : loop_(std::move(loop)),
        reg_(std::move(reg)),
        on_event_(std::move(on_event)),
        on_done_(std::move(on_done)) {}

  void begin(v1::Agent::Stub* stub, const v1::StreamEventsRequest& req, const std::string& token) {
    control::prepareContext(ctx_, token);
    req_ = req;
    reg_->add(&ctx_);
    loop_->begin();
    stub->async()->StreamEvents(&ctx_, &req_, this);
    StartRead(&ev_);
    StartCall();
  }
  void cancel() override { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    loop_->post([cb = on_event_, ev = ev_]() mutable { cb(std::move(ev)); });
    ev_.Clear();
    StartRead(&ev_);
  }
  void OnDone(const grpc::Status& s) override {
    reg_->remove(&ctx_);
    // Drop our self-reference before the completion counts as delivered: once drain() sees no
    // call in flight, nothing of this call may remain. `this` may be deleted here.
    auto loop = loop_;
    // Move the callbacks out: they may (indirectly) own this reactor's handle.
    auto done = [cb = std::move(on_done_), st = toRpc(s)] { cb(st); };
    on_event_ = nullptr;
    auto keep = std::move(self_);
    keep.reset();
    loop->end(std::move(done));
  }
  std::shared_ptr<Events> self_;

 private:
  std::shared_ptr<LoopTarget> loop_;
  std::shared_ptr<CallRegistry> reg_;
  std::function<void(v1::ServerEvent)> on_event_;
  std::function<void(const RpcStatus&)> on_done_;
  grpc::ClientContext ctx_;
  v1::StreamEventsRequest req_;
  v1::ServerEvent ev_;
};

class EventsHandle final : public EventStream {
 public:
  explicit EventsHandle(std::shared_ptr<Events> e) : e_(std::move(e)) {}
  ~EventsHandle() override { e_->cancel(); }
  void cancel() override { e_->cancel(); }

 private:
  std::shared_ptr<Events> e_;
};

class GrpcApi final : public AgentApi {
 public:
  GrpcApi(std::shared_ptr<LoopTarget> loop, std::shared_ptr<v1::Agent::Stub> stub,
          std::shared_ptr<grpc::Channel> channel, const GrpcApiOptions& o,
          std::shared_ptr<CallRegistry> reg)
      : loop_(std::move(loop)),
        stub_(std::move(stub)),
        channel_(std::move(channel)),
        opts_(o),
        reg_(std::move(reg)) {}
  ~GrpcApi() override { reg_->cancelAll(); }

  template <typename Req, typename Resp, typename Method>
  void unary(Method method, const Req& req, Reply<Resp> reply) {
    struct Call {
      grpc::ClientContext ctx;
      Req req;
      Resp resp;
    };
    auto call = std::make_shared<Call>();
    call->req = req;
    control::prepareContext(call->ctx, opts_.token());
    call->ctx.set_deadline(std::chrono::system_clock::now() + opts_.call_timeout);
    reg_->add(&call->ctx);
    auto reg = reg_;
    auto loop = loop_;
    loop->begin();
    (stub_->async()->*method)(&call->ctx, &call->req, &call->resp,
                              [call, reg, loop, reply = std::move(reply)](grpc::Status s) mutable {
                                reg->remove(&call->ctx);
                                loop->end([call, reply = std::move(reply), st = toRpc(s)] {
                                  reply(st, std::move(call->resp));
                                });
                              });
  }

  typedef class v1::Agent::Stub::async Async;

  template <typename Req, typename Resp>
  using MethodPtr = void (Async::*)(grpc::ClientContext*, const Req*, Resp*,
                                    std::function<void(grpc::Status)>);

  void getManifest(Reply<v1::Manifest> reply) override {
    unary<v1::GetManifestRequest, v1::Manifest>(
        MethodPtr<v1::GetManifestRequest, v1::Manifest>(&Async::GetManifest), {}, std::move(reply));
  }
  void updateStartup(const v1::UpdateStartupRequest& req, Reply<v1::Startup> reply) override {
    unary<v1::UpdateStartupRequest, v1::Startup>(
        MethodPtr<v1::UpdateStartupRequest, v1::Startup>(&Async::UpdateStartup), req,
        std::move(reply));
  }
  void updateLifecycle(const v1::UpdateLifecycleRequest& req, Reply<v1::Lifecycle> reply) override {
    unary<v1::UpdateLifecycleRequest, v1::Lifecycle>(
        MethodPtr<v1::UpdateLifecycleRequest, v1::Lifecycle>(&Async::UpdateLifecycle), req,
        std::move(reply));
  }
  void batchUpdateMetadata(const v1::BatchUpdateMetadataRequest& req,
                           Reply<v1::BatchUpdateMetadataResponse> reply) override {
    unary<v1::BatchUpdateMetadataRequest, v1::BatchUpdateMetadataResponse>(
        MethodPtr<v1::BatchUpdateMetadataRequest, v1::BatchUpdateMetadataResponse>(
            &Async::BatchUpdateMetadata),
        req, std::move(reply));
  }
  void batchCreateLogs(const v1::BatchCreateLogsRequest& req,
                       Reply<v1::BatchCreateLogsResponse> reply) override {
    unary<v1::BatchCreateLogsRequest, v1::BatchCreateLogsResponse>(
        MethodPtr<v1::BatchCreateLogsRequest, v1::BatchCreateLogsResponse>(&Async::BatchCreateLogs),
        req, std::move(reply));
  }
  void updateStats(const v1::UpdateStatsRequest& req,
                   Reply<v1::UpdateStatsResponse> reply) override {
    unary<v1::UpdateStatsRequest, v1::UpdateStatsResponse>(
        MethodPtr<v1::UpdateStatsRequest, v1::UpdateStatsResponse>(&Async::UpdateStats), req,
        std::move(reply));
  }
  void batchUpdateAppHealths(const v1::BatchUpdateAppHealthRequest& req,
                             Reply<v1::BatchUpdateAppHealthResponse> reply) override {
    unary<v1::BatchUpdateAppHealthRequest, v1::BatchUpdateAppHealthResponse>(
        MethodPtr<v1::BatchUpdateAppHealthRequest, v1::BatchUpdateAppHealthResponse>(
            &Async::BatchUpdateAppHealths),
        req, std::move(reply));
  }
  void getAnnouncementBanners(Reply<v1::GetAnnouncementBannersResponse> reply) override {
    unary<v1::GetAnnouncementBannersRequest, v1::GetAnnouncementBannersResponse>(
        MethodPtr<v1::GetAnnouncementBannersRequest, v1::GetAnnouncementBannersResponse>(
            &Async::GetAnnouncementBanners),
        {}, std::move(reply));
  }
  void scriptCompleted(const v1::ScriptCompletedRequest& req,
                       Reply<v1::ScriptCompletedResponse> reply) override {
    unary<v1::ScriptCompletedRequest, v1::ScriptCompletedResponse>(
        MethodPtr<v1::ScriptCompletedRequest, v1::ScriptCompletedResponse>(&Async::ScriptCompleted),
        req, std::move(reply));
  }
  void reportConnection(const v1::ReportConnectionRequest& req,
                        Reply<v1::ReportConnectionResponse> reply) override {
    unary<v1::ReportConnectionRequest, v1::ReportConnectionResponse>(
        MethodPtr<v1::ReportConnectionRequest, v1::ReportConnectionResponse>(
            &Async::ReportConnection),
        req, std::move(reply));
  }

  std::unique_ptr<EventStream> streamEvents(
      const v1::StreamEventsRequest& req, std::function<void(v1::ServerEvent)> on_event,
      std::function<void(const RpcStatus&)> on_done) override {
    auto e = std::make_shared<Events>(loop_, reg_, std::move(on_event), std::move(on_done));
    e->self_ = e;
    e->begin(stub_.get(), req, opts_.token());
    return std::make_unique<EventsHandle>(e);
  }

  std::shared_ptr<control::CoordinateStream> coordinate(
      control::CoordinateStream::Callbacks cb) override {
    onLoop(cb);
    return control::CoordinateStream::start(channel_, opts_.token(), std::move(cb));
  }

  std::shared_ptr<control::RelayStream> relay(const control::RelayStream::Key& hello_key,
                                              control::RelayStream::Callbacks cb) override {
    onLoop(cb);
    return control::RelayStream::start(channel_, opts_.token(), hello_key, std::move(cb));
  }

  void cancelAll() override { reg_->cancelAll(); }

 private:
  // A control stream's callbacks (control::CoordinateStream, control::RelayStream) on the loop
  // and counted like every other call: registered before it starts, removed when it ends, its
  // end posted as the call's completion.
  template <typename Callbacks>
  void onLoop(Callbacks& cb) {
    auto loop = loop_;
    auto reg = reg_;
    auto ctx = std::make_shared<grpc::ClientContext*>(nullptr);
    cb.post = [loop](std::function<void()> f) { loop->post(std::move(f)); };
    cb.on_context = [reg, ctx](grpc::ClientContext* c) {
      *ctx = c;
      reg->add(c);
    };
    cb.on_done = [loop, reg, ctx, done = std::move(cb.on_done)](int code, std::string message) {
      reg->remove(*ctx);
      loop->end([done, st = RpcStatus{code, std::move(message)}] {
        if (done) done(st.code, st.message);
      });
    };
    loop->begin();
  }

  std::shared_ptr<LoopTarget> loop_;
  std::shared_ptr<v1::Agent::Stub> stub_;
  std::shared_ptr<grpc::Channel> channel_;  // for the overlay's streams
  GrpcApiOptions opts_;
  std::shared_ptr<CallRegistry> reg_;
};

class GrpcFactory final : public AgentApiFactory {
 public:
  GrpcFactory(asio::io_context& io, std::shared_ptr<grpc::Channel> channel, GrpcApiOptions o)
      : loop_(std::make_shared<LoopTarget>(io)),
        stub_(v1::Agent::NewStub(channel)),
        opts_(std::move(o)),
        channel_(std::move(channel)) {}
  ~GrpcFactory() override { drain(std::chrono::milliseconds(0)); }
  std::unique_ptr<AgentApi> connect() override {
    auto reg = std::make_shared<CallRegistry>();
    registries_.push_back(reg);
    return std::make_unique<GrpcApi>(loop_, stub_, channel_, opts_, reg);
  }
  void drain(std::chrono::milliseconds timeout) override {
    for (auto& w : registries_) {
      if (auto r = w.lock()) r->cancelAll();
    }
    loop_->drain(timeout);
  }

 private:
  std::shared_ptr<LoopTarget> loop_;
  std::shared_ptr<v1::Agent::Stub> stub_;
  GrpcApiOptions opts_;
  std::shared_ptr<grpc::Channel> channel_;
  std::vector<std::weak_ptr<CallRegistry>> registries_;
};

}  // namespace

Result<std::unique_ptr<AgentApiFactory>> makeGrpcApiFactory(asio::io_context& io,
                                                            const control::ControlUrl& url,
                                                            GrpcApiOptions options) {
  auto ch = control::makeChannel(url, options.channel);
  if (!ch) return makeError(ch.error());
  return std::unique_ptr<AgentApiFactory>(
      std::make_unique<GrpcFactory>(io, *ch, std::move(options)));
}

}  // namespace wsa::agent
