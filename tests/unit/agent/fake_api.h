#pragma once
// A scriptable AgentApi: records every call; the test answers them (in order or by type) on its
// own thread, standing in for the event loop.

#include <deque>
#include <functional>
#include <string>
#include <variant>

#include "agent/api.h"

namespace wsa::agent::test {

class FakeApi final : public AgentApi {
 public:
  struct Call {
    std::string method;
    std::shared_ptr<google::protobuf::Message> request;
    // Completes the call: status plus a response (may be null for an empty response).
    std::function<void(const RpcStatus&, const google::protobuf::Message*)> reply;
  };

  std::deque<Call> calls;
  size_t cancel_all_count = 0;

  // Answers the oldest pending call of `method` (or any if empty); false if none.
  bool answer(const std::string& method, const RpcStatus& st = {},
              const google::protobuf::Message* resp = nullptr) {
    for (auto it = calls.begin(); it != calls.end(); ++it) {
      if (!method.empty() && it->method != method) continue;
      Call c = std::move(*it);
      calls.erase(it);
      c.reply(st, resp);
      return true;
    }
    return false;
  }
  size_t pending(const std::string& method) const {
    size_t n = 0;
    for (const auto& c : calls) n += c.method == method ? 1 : 0;
    return n;
  }
  template <typename T>
  T request(const std::string& method, size_t index = 0) const {
    size_t i = 0;
    for (const auto& c : calls) {
      if (c.method != method) continue;
      if (i++ == index) return *static_cast<const T*>(c.request.get());
    }
    return T();
  }

  template <typename Req, typename Resp>
  void record(const std::string& method, const Req& req, Reply<Resp> reply) {
    Call c;
    c.method = method;
    c.request = std::make_shared<Req>(req);
    c.reply = [reply = std::move(reply)](const RpcStatus& st, const google::protobuf::Message* m) {
      Resp r;
      if (m != nullptr) r.CopyFrom(*m);
      reply(st, std::move(r));
    };
    calls.push_back(std::move(c));
  }

  void getManifest(Reply<v1::Manifest> reply) override {
    record("GetManifest", v1::GetManifestRequest(), std::move(reply));
  }
  void updateStartup(const v1::UpdateStartupRequest& r, Reply<v1::Startup> reply) override {
    record("UpdateStartup", r, std::move(reply));
  }
  void updateLifecycle(const v1::UpdateLifecycleRequest& r, Reply<v1::Lifecycle> reply) override {
    record("UpdateLifecycle", r, std::move(reply));
  }
  void batchUpdateMetadata(const v1::BatchUpdateMetadataRequest& r,
                           Reply<v1::BatchUpdateMetadataResponse> reply) override {
    record("BatchUpdateMetadata", r, std::move(reply));
  }
  void batchCreateLogs(const v1::BatchCreateLogsRequest& r,
                       Reply<v1::BatchCreateLogsResponse> reply) override {
    record("BatchCreateLogs", r, std::move(reply));
  }
  void updateStats(const v1::UpdateStatsRequest& r, Reply<v1::UpdateStatsResponse> reply) override {
    record("UpdateStats", r, std::move(reply));
  }
  void batchUpdateAppHealths(const v1::BatchUpdateAppHealthRequest& r,
                             Reply<v1::BatchUpdateAppHealthResponse> reply) override {
    record("BatchUpdateAppHealths", r, std::move(reply));
  }
  void getAnnouncementBanners(Reply<v1::GetAnnouncementBannersResponse> reply) override {
    record("GetAnnouncementBanners", v1::GetAnnouncementBannersRequest(), std::move(reply));
  }
  void scriptCompleted(const v1::ScriptCompletedRequest& r,
                       Reply<v1::ScriptCompletedResponse> reply) override {
    record("ScriptCompleted", r, std::move(reply));
  }
  void reportConnection(const v1::ReportConnectionRequest& r,
                        Reply<v1::ReportConnectionResponse> reply) override {
    record("ReportConnection", r, std::move(reply));
  }
  std::unique_ptr<EventStream> streamEvents(const v1::StreamEventsRequest&,
                                            std::function<void(v1::ServerEvent)>,
                                            std::function<void(const RpcStatus&)>) override {
    return nullptr;
  }
  void cancelAll() override { ++cancel_all_count; }
};

}  // namespace wsa::agent::test
