// The overlay.v1.Overlay service: coordination, relay maps and the relay data path.

#include "controld/context.h"
#include "controld/grpc_common.h"
#include "controld/reactors.h"
#include "controld/ticket_relay.h"
#include "wsa/overlay/v1/overlay_service.grpc.pb.h"

namespace wsa::controld {

namespace ov = wsa::overlay::v1;
using grpc::Status;
using grpc::StatusCode;

namespace {

constexpr size_t kMaxCoordinationQueue = 256;
constexpr size_t kMaxRelayQueue = 256;  // responses; each batches up to kRelayBatch packets
constexpr int kRelayBatch = 64;
constexpr int kMaxPacketsPerRequest = 1024;
constexpr size_t kMaxPayload = 65535;

template <typename Reactor>
Reactor* refused(const Status& s) {
  class R : public Reactor {
   public:
    explicit R(const Status& st) { this->Finish(st); }
    void OnDone() override { delete this; }
  };
  return new R(s);
}

class CoordinateStream final
    : public QueuedWriteReactor<
          ov::CoordinateResponse,
          grpc::ServerBidiReactor<ov::CoordinateRequest, ov::CoordinateResponse>>,
      public CoordinationSink {
 public:
  CoordinateStream(ServiceContext& ctx, Principal who)
      : QueuedWriteReactor(kMaxCoordinationQueue), ctx_(ctx), who_(std::move(who)) {}

  void start(std::shared_ptr<CoordinateStream> self) {
    self_ = std::move(self);
    if (!ctx_.hub->openStream(this)) {
      finishAfterWrites(Status(StatusCode::UNAVAILABLE, "server is shutting down"));
      return;
    }
    StartRead(&request_);
  }

  bool pushCoordination(const ov::CoordinateResponse& r) override {
    if (enqueue(r)) return true;
    ctx_.metrics->streamQueueFull("coordinate");
    // A peer that cannot keep up with coordination would act on stale nodes: end its stream so
    // it reconnects and receives a fresh snapshot.
    finishAfterWrites(Status(StatusCode::RESOURCE_EXHAUSTED, "coordination queue full"));
    return false;
  }
  void closeStream(const std::string& reason) override {
    finishAfterWrites(Status(StatusCode::UNAVAILABLE, reason));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      finishAfterWrites(Status::OK);
      return;
    }
    ctx_.hub->coordinate(this, who_, request_);
    request_.Clear();
    StartRead(&request_);
  }
  void OnCancel() override { finishAfterWrites(Status(StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    ctx_.hub->coordinationEnded(this);
    ctx_.hub->streamDone(this);
    self_.reset();
  }

 private:
  ServiceContext& ctx_;
  Principal who_;
  ov::CoordinateRequest request_;
  std::shared_ptr<CoordinateStream> self_;
};

class RelayMapStream final
    : public QueuedWriteReactor<ov::RelayMap, grpc::ServerWriteReactor<ov::RelayMap>>,
      public StreamHandle {
 public:
  explicit RelayMapStream(ServiceContext& ctx) : QueuedWriteReactor(4), ctx_(ctx) {}

  void start(std::shared_ptr<RelayMapStream> self, const ov::RelayMap& map) {
    self_ = std::move(self);
    if (!ctx_.hub->openStream(this)) {
      finishAfterWrites(Status(StatusCode::UNAVAILABLE, "server is shutting down"));
      return;
    }
    // The map is static for the life of this server; the stream stays open so that a future
    // change (or a shutdown) reaches subscribers at once.
    enqueue(map);
  }
  void closeStream(const std::string& reason) override {
    finishAfterWrites(Status(StatusCode::UNAVAILABLE, reason));
  }
  void OnCancel() override { finishAfterWrites(Status(StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    ctx_.hub->streamDone(this);
    self_.reset();
  }

 private:
  ServiceContext& ctx_;
  std::shared_ptr<RelayMapStream> self_;
};

Status toStatus(const RelayRefusal& r) {
  switch (r.code) {
    case RelayRefusal::Code::kInvalidArgument:
      return Status(StatusCode::INVALID_ARGUMENT, r.message);
    case RelayRefusal::Code::kPermissionDenied:
      return Status(StatusCode::PERMISSION_DENIED, r.message);
    case RelayRefusal::Code::kResourceExhausted:
      return Status(StatusCode::RESOURCE_EXHAUSTED, r.message);
    case RelayRefusal::Code::kUnavailable:
      break;
  }
  return Status(StatusCode::UNAVAILABLE, r.message);
}

// The built-in relay for one authenticated caller: the hello names a key the same caller
// published through Coordinate; tickets are ignored.
class HubRelay final : public RelayBackend {
 public:
  HubRelay(Hub& hub, Principal who) : hub_(hub), who_(std::move(who)) {}
  std::optional<RelayRefusal> openRelayStream(StreamHandle* stream) override {
    if (hub_.openStream(stream)) return std::nullopt;
    return RelayRefusal{RelayRefusal::Code::kUnavailable, "server is shutting down"};
  }
  void relayStreamDone(RelaySink* sink) override {
    hub_.removeRelay(sink);
    hub_.streamDone(sink);
  }
  std::optional<RelayRefusal> hello(RelaySink* sink, const ov::RelayRequest& hello) override {
    std::string err = hub_.addRelay(sink, who_, hello.hello_key());
    if (err.empty()) return std::nullopt;
    return RelayRefusal{RelayRefusal::Code::kPermissionDenied, err};
  }
  void ticket(RelaySink*, const ov::RelayTicket&) override {}
  void relay(RelaySink* from, const std::string& dest_key, const std::string& payload) override {
    hub_.relay(from, dest_key, payload);
  }

 private:
  Hub& hub_;
  Principal who_;
};

// Overlay.Relay's stream, on the built-in relay (HubRelay) or a relay-only node's (TicketRelay).
class RelayStream final
    : public QueuedWriteReactor<ov::RelayResponse,
                                grpc::ServerBidiReactor<ov::RelayRequest, ov::RelayResponse>>,
      public RelaySink {
 public:
  // `owned`, if set, is `backend` and lives as long as the stream.
  RelayStream(ServiceContext& ctx, RelayBackend* backend, std::unique_ptr<RelayBackend> owned)
      : QueuedWriteReactor(kMaxRelayQueue),
        ctx_(ctx),
        backend_(*backend),
        owned_(std::move(owned)) {}

  void start(std::shared_ptr<RelayStream> self) {
    self_ = std::move(self);
    if (auto refused = backend_.openRelayStream(this)) {
      opened_ = false;
      finishAfterWrites(toStatus(*refused));
      return;
    }
    StartRead(&request_);
  }

  bool pushPacket(const std::string& source_key, const std::string& payload) override {
    ov::RelayResponse fresh;
    auto* p = fresh.add_packets();
    p->set_peer_key(source_key);
    p->set_payload(payload);
    bool ok = enqueueWith(
        [&](ov::RelayResponse& back) {
          if (back.packets_size() >= kRelayBatch) return false;
          *back.add_packets() = *p;
          return true;
        },
        std::move(fresh));
    if (!ok) ctx_.metrics->streamQueueFull("relay");
    return ok;
  }
  void closeStream(const std::string& reason) override {
    finishAfterWrites(Status(StatusCode::UNAVAILABLE, reason));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      finishAfterWrites(Status::OK);
      return;
    }
    if (!bound_) {
      if (request_.hello_key().empty()) {
        finishAfterWrites(
            Status(StatusCode::INVALID_ARGUMENT, "the first relay message must carry hello_key"));
        return;
      }
      if (auto refused = backend_.hello(this, request_)) {
        finishAfterWrites(toStatus(*refused));
        return;
      }
      bound_ = true;
      enqueue(ov::RelayResponse());  // acknowledges the hello
    } else if (request_.has_ticket()) {
      backend_.ticket(this, request_.ticket());
    }
    if (request_.packets_size() > kMaxPacketsPerRequest) {
      finishAfterWrites(
          Status(StatusCode::INVALID_ARGUMENT, "more than 1024 packets in one message"));
      return;
    }
    for (const auto& p : request_.packets()) {
      if (p.payload().size() > kMaxPayload || p.payload().empty()) continue;
      backend_.relay(this, p.peer_key(), p.payload());
    }
    request_.Clear();
    StartRead(&request_);
  }
  void OnCancel() override { finishAfterWrites(Status(StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    if (opened_) backend_.relayStreamDone(this);
    self_.reset();
  }

 private:
  ServiceContext& ctx_;
  RelayBackend& backend_;
  std::unique_ptr<RelayBackend> owned_;
  ov::RelayRequest request_;
  bool bound_ = false;
  bool opened_ = true;
  std::shared_ptr<RelayStream> self_;
};

class OverlayService final : public ov::Overlay::CallbackService {
 public:
  explicit OverlayService(ServiceContext& ctx) : ctx_(ctx) {}

  grpc::ServerBidiReactor<ov::CoordinateRequest, ov::CoordinateResponse>* Coordinate(
      grpc::CallbackServerContext* call) override {
    auto auth = authenticate(ctx_, *call, "Coordinate");
    ctx_.metrics->rpc("Coordinate", auth.who ? 0 : auth.status.error_code());
    if (!auth.who) {
      return refused<grpc::ServerBidiReactor<ov::CoordinateRequest, ov::CoordinateResponse>>(
          auth.status);
    }
    auto s = std::make_shared<CoordinateStream>(ctx_, *auth.who);
    s->start(s);
    return s.get();
  }

  grpc::ServerWriteReactor<ov::RelayMap>* StreamRelayMaps(
      grpc::CallbackServerContext* call, const ov::StreamRelayMapsRequest*) override {
    auto auth = authenticate(ctx_, *call, "StreamRelayMaps");
    ctx_.metrics->rpc("StreamRelayMaps", auth.who ? 0 : auth.status.error_code());
    if (!auth.who) return refused<grpc::ServerWriteReactor<ov::RelayMap>>(auth.status);
    ov::RelayMap map = ctx_.config->relay_map;
    if (auth.who->isAgent()) {
      auto it = ctx_.agent_configs.find(auth.who->agent_id);
      if (it != ctx_.agent_configs.end() && it->second->manifest.relay_map().regions_size() > 0) {
        map = it->second->manifest.relay_map();
      }
    }
    auto s = std::make_shared<RelayMapStream>(ctx_);
    s->start(s, map);
    return s.get();
  }

  grpc::ServerBidiReactor<ov::RelayRequest, ov::RelayResponse>* Relay(
      grpc::CallbackServerContext* call) override {
    auto auth = authenticate(ctx_, *call, "Relay");
    ctx_.metrics->rpc("Relay", auth.who ? 0 : auth.status.error_code());
    if (!auth.who) {
      return refused<grpc::ServerBidiReactor<ov::RelayRequest, ov::RelayResponse>>(auth.status);
    }
    auto backend = std::make_unique<HubRelay>(*ctx_.hub, *auth.who);
    auto* b = backend.get();
    auto s = std::make_shared<RelayStream>(ctx_, b, std::move(backend));
    s->start(s);
    return s.get();
  }

  grpc::ServerUnaryReactor* LookupAgent(grpc::CallbackServerContext* call,
                                        const ov::LookupAgentRequest* req,
                                        ov::LookupAgentResponse* out) override {
    auto* reactor = call->DefaultReactor();
    Status status;
    auto auth = authenticate(ctx_, *call, "LookupAgent");
    if (ctx_.shutting_down) {
      status = Status(StatusCode::UNAVAILABLE, "server is shutting down");
    } else if (!auth.who) {
      status = auth.status;
    } else if (auth.who->isAgent()) {
      status = Status(StatusCode::PERMISSION_DENIED, "LookupAgent needs a user token");
    } else {
      const AgentIdentity* agent = ctx_.hub->findAgentByName(req->agent_name());
      // Unknown and forbidden look the same, so tokens cannot probe for agent names.
      if (agent == nullptr || !Hub::userMayReach(*agent, auth.who->name)) {
        status =
            Status(StatusCode::NOT_FOUND, "no agent \"" + req->agent_name() + "\" that user \"" +
                                              auth.who->name + "\" may reach");
      } else {
        auto client = ctx_.hub->issueClient(auth.who->name);
        out->set_agent_id(agent->id);
        for (const auto& a : agent->addresses) out->add_agent_addresses(a);
        out->set_client_id(client.id);
        for (const auto& a : client.addresses) out->add_client_addresses(a);
        out->set_agent_connected(ctx_.hub->agentConnected(agent->id));
      }
    }
    ctx_.metrics->rpc("LookupAgent", status.error_code());
    reactor->Finish(status);
    return reactor;
  }

 private:
  ServiceContext& ctx_;
};

// A relay-only node's Overlay service: Relay alone (the other calls stay UNIMPLEMENTED), no
// bearer tokens: the relay ticket in the hello is the credential.
class RelayOnlyService final : public ov::Overlay::CallbackService {
 public:
  RelayOnlyService(ServiceContext& ctx, TicketRelay& relay) : ctx_(ctx), relay_(relay) {}

  grpc::ServerBidiReactor<ov::RelayRequest, ov::RelayResponse>* Relay(
      grpc::CallbackServerContext*) override {
    ctx_.metrics->rpc("Relay", 0);
    auto s = std::make_shared<RelayStream>(ctx_, &relay_, nullptr);
    s->start(s);
    return s.get();
  }

 private:
  ServiceContext& ctx_;
  TicketRelay& relay_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeOverlayService(ServiceContext& ctx) {
  return std::make_unique<OverlayService>(ctx);
}

std::unique_ptr<grpc::Service> makeRelayOnlyService(ServiceContext& ctx, TicketRelay& relay) {
  return std::make_unique<RelayOnlyService>(ctx, relay);
}

}  // namespace wsa::controld
