// The agent.v1.Agent service: every call an agent makes to its control server.

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include "controld/context.h"
#include "controld/grpc_common.h"
#include "controld/reactors.h"
#include "wsa/agent/v1/agent_service.grpc.pb.h"
#include "wsa/common/uuid.h"

namespace wsa::controld {

namespace v1 = wsa::agent::v1;
using google::protobuf::util::TimeUtil;
using grpc::Status;
using grpc::StatusCode;

namespace {

constexpr size_t kMaxEventQueue = 64;
constexpr int kMaxMetadataPerBatch = 512;
constexpr int kMaxLogsPerBatch = 100000;

SystemTime toSystemTime(const google::protobuf::Timestamp& ts) {
  return fromUnixNanos(TimeUtil::TimestampToNanoseconds(ts));
}

SystemTime now() {
  return std::chrono::system_clock::now();
}

class EventStream final
    : public QueuedWriteReactor<v1::ServerEvent, grpc::ServerWriteReactor<v1::ServerEvent>>,
      public EventSink {
 public:
  EventStream(ServiceContext& ctx, std::string agent_id, std::string agent_name)
      : QueuedWriteReactor(kMaxEventQueue),
        ctx_(ctx),
        agent_id_(std::move(agent_id)),
        agent_name_(std::move(agent_name)) {}

  void start(std::shared_ptr<EventStream> self) {
    self_ = std::move(self);
    if (!ctx_.hub->openStream(this)) {
      finishAfterWrites(Status(StatusCode::UNAVAILABLE, "server is shutting down"));
      return;
    }
    v1::ServerEvent hello;
    hello.mutable_hello()->set_server_version(ctx_.version);
    *hello.mutable_hello()->mutable_server_time() = TimeUtil::GetCurrentTime();
    enqueue(std::move(hello));
    ctx_.hub->addEventStream(agent_id_, this);
    registered_ = true;
    ctx_.log->info("agent {} connected (event stream open)", agent_name_);
  }

  bool pushEvent(const v1::ServerEvent& event) override {
    if (enqueue(event)) return true;
    ctx_.metrics->streamQueueFull("events");
    return false;
  }
  void closeStream(const std::string& reason) override {
    finishAfterWrites(Status(StatusCode::UNAVAILABLE, reason));
  }

  void OnCancel() override { finishAfterWrites(Status(StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    if (registered_) {
      ctx_.hub->removeEventStream(agent_id_, this);
      ctx_.log->info("agent {} disconnected (event stream closed)", agent_name_);
    }
    ctx_.hub->streamDone(this);
    self_.reset();  // may delete this
  }

 private:
  ServiceContext& ctx_;
  std::string agent_id_;
  std::string agent_name_;
  bool registered_ = false;
  std::shared_ptr<EventStream> self_;
};

class AgentService final : public v1::Agent::CallbackService {
 public:
  explicit AgentService(ServiceContext& ctx) : ctx_(ctx) {}

  // Runs `body` for an authenticated agent and finishes the call, recording metrics. Store
  // failures become INTERNAL with the detail logged (not sent).
  template <typename Body>
  grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* call, const char* method,
                                  Body&& body) {
    auto* reactor = call->DefaultReactor();
    Status status;
    ++ctx_.inflight;
    try {
      auto auth = authenticate(ctx_, *call, method);
      if (ctx_.shutting_down) {
        status = Status(StatusCode::UNAVAILABLE, "server is shutting down");
      } else if (!auth.who) {
        status = auth.status;
      } else if (!auth.who->isAgent()) {
        status = Status(StatusCode::PERMISSION_DENIED, "this call needs an agent token");
      } else {
        status = body(*auth.who);
      }
    } catch (const std::exception& e) {
      ctx_.log->error("{}: {}", method, e.what());
      status = Status(StatusCode::INTERNAL, "internal error; see the server log");
    }
    ctx_.metrics->rpc(method, status.error_code());
    reactor->Finish(status);
    --ctx_.inflight;
    return reactor;
  }

  const AgentConfig* configOf(const Principal& who) {
    auto it = ctx_.agent_configs.find(who.agent_id);
    return it == ctx_.agent_configs.end() ? nullptr : it->second;
  }

  grpc::ServerUnaryReactor* GetManifest(grpc::CallbackServerContext* call,
                                        const v1::GetManifestRequest*, v1::Manifest* out) override {
    return unary(call, "GetManifest", [&](const Principal& who) {
      const AgentConfig* ac = configOf(who);
      if (ac == nullptr) return Status(StatusCode::NOT_FOUND, "agent is no longer configured");
      const AgentRecord& rec = ctx_.agent_records.at(who.agent_id);
      *out = ac->manifest;
      out->set_agent_id(rec.id);
      out->set_agent_name(ac->name);
      out->set_owner_username(ac->owner);
      out->set_workspace_name(ac->workspace_name);
      out->set_workspace_id(nameUuid("wsa.workspace", ac->workspace_name));
      out->clear_overlay_addresses();
      out->add_overlay_addresses(rec.ipv4);
      out->add_overlay_addresses(rec.ipv6);
      if (out->relay_map().regions_size() == 0) *out->mutable_relay_map() = ctx_.config->relay_map;
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* UpdateStartup(grpc::CallbackServerContext* call,
                                          const v1::UpdateStartupRequest* req,
                                          v1::Startup* out) override {
    return unary(call, "UpdateStartup", [&](const Principal& who) {
      if (!req->has_startup()) return Status(StatusCode::INVALID_ARGUMENT, "startup is required");
      ctx_.store->setStartup(who.agent_id, req->startup(), now());
      ctx_.log->info("agent {} started: version {}, directory \"{}\"", who.name,
                     req->startup().version(), req->startup().expanded_directory());
      *out = req->startup();
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* UpdateLifecycle(grpc::CallbackServerContext* call,
                                            const v1::UpdateLifecycleRequest* req,
                                            v1::Lifecycle* out) override {
    return unary(call, "UpdateLifecycle", [&](const Principal& who) {
      const auto& lc = req->lifecycle();
      if (lc.state() <= v1::LIFECYCLE_STATE_CREATED || !v1::LifecycleState_IsValid(lc.state())) {
        return Status(StatusCode::INVALID_ARGUMENT,
                      "lifecycle.state must be one of starting .. off");
      }
      SystemTime changed = lc.has_changed_at() ? toSystemTime(lc.changed_at()) : now();
      bool added = ctx_.store->appendLifecycle(who.agent_id, lc.state(), changed, now());
      if (added) {
        ctx_.log->info("agent {} lifecycle: {}", who.name, lifecycleName(lc.state()));
      }
      *out = lc;
      if (!out->has_changed_at()) {
        *out->mutable_changed_at() = TimeUtil::NanosecondsToTimestamp(toUnixNanos(changed));
      }
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* BatchUpdateMetadata(grpc::CallbackServerContext* call,
                                                const v1::BatchUpdateMetadataRequest* req,
                                                v1::BatchUpdateMetadataResponse*) override {
    return unary(call, "BatchUpdateMetadata", [&](const Principal& who) {
      if (req->metadata_size() > kMaxMetadataPerBatch) {
        return Status(StatusCode::INVALID_ARGUMENT, "more than 512 metadata results in one batch");
      }
      const AgentConfig* ac = configOf(who);
      for (const auto& md : req->metadata()) {
        bool known = false;
        if (ac != nullptr) {
          for (const auto& d : ac->manifest.metadata()) known = known || d.key() == md.key();
        }
        if (!known) {
          ctx_.log->debug("agent {} sent metadata for unknown key \"{}\"; ignored", who.name,
                          md.key());
          continue;
        }
        SystemTime at =
            md.result().has_collected_at() ? toSystemTime(md.result().collected_at()) : now();
        ctx_.store->upsertMetadata(who.agent_id, md.key(), md.result().value(), md.result().error(),
                                   at);
      }
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* BatchCreateLogs(grpc::CallbackServerContext* call,
                                            const v1::BatchCreateLogsRequest* req,
                                            v1::BatchCreateLogsResponse* out) override {
    return unary(call, "BatchCreateLogs", [&](const Principal& who) {
      if (req->log_source_id().empty()) {
        return Status(StatusCode::INVALID_ARGUMENT, "log_source_id is required");
      }
      if (req->logs_size() > kMaxLogsPerBatch) {
        return Status(StatusCode::INVALID_ARGUMENT, "more than 100000 lines in one batch");
      }
      std::string source = req->log_source_name();
      if (const AgentConfig* ac = configOf(who)) {
        for (const auto& s : ac->manifest.scripts()) {
          if (s.log_source_id() == req->log_source_id()) source = s.display_name();
        }
      }
      if (source.empty()) source = req->log_source_id();
      auto result = ctx_.store->appendLogs(who.agent_id, *req, source,
                                           ctx_.logBudgetFor(who.agent_id), now());
      if (result.duplicates > 0) ctx_.metrics->logDuplicates(result.duplicates);
      if (result.limit_exceeded) {
        ctx_.metrics->logBatchOverBudget();
        ctx_.log->warn("agent {} exceeded its log budget of {} bytes; refusing further logs",
                       who.name, ctx_.logBudgetFor(who.agent_id));
      } else {
        ctx_.metrics->logsStored(result.stored, result.stored_bytes);
      }
      out->set_log_limit_exceeded(result.limit_exceeded);
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* UpdateStats(grpc::CallbackServerContext* call,
                                        const v1::UpdateStatsRequest* req,
                                        v1::UpdateStatsResponse* out) override {
    return unary(call, "UpdateStats", [&](const Principal& who) {
      if (req->has_stats()) {
        std::string json;
        google::protobuf::util::JsonPrintOptions opts;
        opts.preserve_proto_field_names = true;
        opts.always_print_primitive_fields = true;
        auto st = google::protobuf::util::MessageToJsonString(req->stats(), &json, opts);
        if (!st.ok()) return Status(StatusCode::INVALID_ARGUMENT, "stats: " + st.ToString());
        ctx_.store->setStats(who.agent_id, json, now());
      }
      *out->mutable_report_interval() =
          TimeUtil::SecondsToDuration(ctx_.config->stats_report_interval_seconds);
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* BatchUpdateAppHealths(grpc::CallbackServerContext* call,
                                                  const v1::BatchUpdateAppHealthRequest* req,
                                                  v1::BatchUpdateAppHealthResponse*) override {
    return unary(call, "BatchUpdateAppHealths", [&](const Principal& who) {
      const AgentConfig* ac = configOf(who);
      for (const auto& u : req->updates()) {
        bool known = false;
        if (ac != nullptr) {
          for (const auto& app : ac->manifest.apps()) known = known || app.id() == u.id();
        }
        if (!known) {
          return Status(StatusCode::INVALID_ARGUMENT, "unknown app id \"" + u.id() + "\"");
        }
        if (u.health() == v1::APP_HEALTH_UNSPECIFIED || !v1::AppHealth_IsValid(u.health())) {
          return Status(StatusCode::INVALID_ARGUMENT, "app \"" + u.id() + "\": invalid health");
        }
      }
      for (const auto& u : req->updates()) {
        ctx_.store->setAppHealth(who.agent_id, u.id(), u.health(), now());
      }
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* GetAnnouncementBanners(
      grpc::CallbackServerContext* call, const v1::GetAnnouncementBannersRequest*,
      v1::GetAnnouncementBannersResponse* out) override {
    return unary(call, "GetAnnouncementBanners", [&](const Principal&) {
      if (auto b = ctx_.store->banner()) {
        auto* pb = out->add_announcement_banners();
        pb->set_enabled(b->enabled);
        pb->set_message(b->message);
        pb->set_background_color(b->background_color);
      }
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* ScriptCompleted(grpc::CallbackServerContext* call,
                                            const v1::ScriptCompletedRequest* req,
                                            v1::ScriptCompletedResponse*) override {
    return unary(call, "ScriptCompleted", [&](const Principal& who) {
      if (req->timing().script_id().empty()) {
        return Status(StatusCode::INVALID_ARGUMENT, "timing.script_id is required");
      }
      ctx_.store->addScriptTiming(who.agent_id, req->timing());
      return Status::OK;
    });
  }

  grpc::ServerUnaryReactor* ReportConnection(grpc::CallbackServerContext* call,
                                             const v1::ReportConnectionRequest* req,
                                             v1::ReportConnectionResponse*) override {
    return unary(call, "ReportConnection", [&](const Principal& who) {
      const auto& c = req->connection();
      if (c.id().empty()) return Status(StatusCode::INVALID_ARGUMENT, "connection.id is required");
      if (c.action() == v1::Connection::ACTION_UNSPECIFIED) {
        return Status(StatusCode::INVALID_ARGUMENT, "connection.action is required");
      }
      ctx_.store->addConnection(who.agent_id, c);
      return Status::OK;
    });
  }

  grpc::ServerWriteReactor<v1::ServerEvent>* StreamEvents(grpc::CallbackServerContext* call,
                                                          const v1::StreamEventsRequest*) override {
    auto auth = authenticate(ctx_, *call, "StreamEvents");
    Status refuse;
    if (!auth.who) {
      refuse = auth.status;
    } else if (!auth.who->isAgent()) {
      refuse = Status(StatusCode::PERMISSION_DENIED, "this call needs an agent token");
    }
    if (!refuse.ok()) {
      ctx_.metrics->rpc("StreamEvents", refuse.error_code());
      class Refused : public grpc::ServerWriteReactor<v1::ServerEvent> {
       public:
        explicit Refused(const Status& s) { Finish(s); }
        void OnDone() override { delete this; }
      };
      return new Refused(refuse);
    }
    ctx_.metrics->rpc("StreamEvents", 0);
    auto stream = std::make_shared<EventStream>(ctx_, auth.who->agent_id, auth.who->name);
    stream->start(stream);
    return stream.get();
  }

 private:
  ServiceContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeAgentService(ServiceContext& ctx) {
  return std::make_unique<AgentService>(ctx);
}

}  // namespace wsa::controld
