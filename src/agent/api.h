#pragma once
// The agent's view of its control server. Every reply and stream event is delivered on the
// agent's event loop, exactly once per call (cancelled calls reply with kCancelled). One
// AgentApi instance serves one connection; cancelAll() ends everything it started.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "wsa/agent/v1/apps.pb.h"
#include "wsa/agent/v1/banner.pb.h"
#include "wsa/agent/v1/connection.pb.h"
#include "wsa/agent/v1/events.pb.h"
#include "wsa/agent/v1/lifecycle.pb.h"
#include "wsa/agent/v1/logs.pb.h"
#include "wsa/agent/v1/manifest.pb.h"
#include "wsa/agent/v1/metadata.pb.h"
#include "wsa/agent/v1/scripts.pb.h"
#include "wsa/agent/v1/stats.pb.h"
#include "wsa/control/coordinate_stream.h"
#include "wsa/control/relay_stream.h"

namespace wsa::agent {

// gRPC status codes we act on.
struct RpcStatus {
  enum Code {
    kOk = 0,
    kCancelled = 1,
    kInvalidArgument = 3,
    kDeadlineExceeded = 4,
    kNotFound = 5,
    kPermissionDenied = 7,
    kFailedPrecondition = 9,
    kUnavailable = 14,
    kUnauthenticated = 16,
  };
  int code = kOk;
  std::string message;
  bool ok() const { return code == kOk; }
  std::string text() const;
};

template <typename T>
using Reply = std::function<void(const RpcStatus&, T)>;

class EventStream {
 public:
  virtual ~EventStream() = default;
  virtual void cancel() = 0;
};

class AgentApi {
 public:
  virtual ~AgentApi() = default;
  virtual void getManifest(Reply<v1::Manifest> reply) = 0;
  virtual void updateStartup(const v1::UpdateStartupRequest& req, Reply<v1::Startup> reply) = 0;
  virtual void updateLifecycle(const v1::UpdateLifecycleRequest& req,
                               Reply<v1::Lifecycle> reply) = 0;
  virtual void batchUpdateMetadata(const v1::BatchUpdateMetadataRequest& req,
                                   Reply<v1::BatchUpdateMetadataResponse> reply) = 0;
  virtual void batchCreateLogs(const v1::BatchCreateLogsRequest& req,
                               Reply<v1::BatchCreateLogsResponse> reply) = 0;
  virtual void updateStats(const v1::UpdateStatsRequest& req,
                           Reply<v1::UpdateStatsResponse> reply) = 0;
  virtual void batchUpdateAppHealths(const v1::BatchUpdateAppHealthRequest& req,
                                     Reply<v1::BatchUpdateAppHealthResponse> reply) = 0;
  virtual void getAnnouncementBanners(Reply<v1::GetAnnouncementBannersResponse> reply) = 0;
  virtual void scriptCompleted(const v1::ScriptCompletedRequest& req,
                               Reply<v1::ScriptCompletedResponse> reply) = 0;
  virtual void reportConnection(const v1::ReportConnectionRequest& req,
                                Reply<v1::ReportConnectionResponse> reply) = 0;
  // Server stream: on_event for each event, then on_done once.
  virtual std::unique_ptr<EventStream> streamEvents(
      const v1::StreamEventsRequest& req, std::function<void(v1::ServerEvent)> on_event,
      std::function<void(const RpcStatus&)> on_done) = 0;
  // The overlay's coordination stream (Overlay.Coordinate, control::CoordinateStream: send()
  // queues, bounded; beyond the bound the stream is cancelled and on_done reports it):
  // on_response for each response, then on_done once, all on the loop (`post` in the callbacks
  // is set here). Fakes that do not coordinate return null.
  virtual std::shared_ptr<control::CoordinateStream> coordinate(
      control::CoordinateStream::Callbacks callbacks) {
    (void)callbacks;
    return nullptr;
  }
  // The overlay's relay stream (Overlay.Relay): on_ready, on_packets and on_done arrive on the
  // loop (`post` in the callbacks is set here). Fakes without a relay return null.
  virtual std::shared_ptr<control::RelayStream> relay(const control::RelayStream::Key& hello_key,
                                                      control::RelayStream::Callbacks callbacks) {
    (void)hello_key;
    (void)callbacks;
    return nullptr;
  }
  // Cancels every call in flight; their replies arrive (kCancelled) on the loop.
  virtual void cancelAll() = 0;
};

// Opens per-connection APIs over one long-lived channel.
class AgentApiFactory {
 public:
  virtual ~AgentApiFactory() = default;
  virtual std::unique_ptr<AgentApi> connect() = 0;
  // At exit: cancels every call still in flight and waits (bounded) until their completions
  // have been handed to the loop. Afterwards nothing is posted to the loop any more.
  virtual void drain(std::chrono::milliseconds) {}
};

}  // namespace wsa::agent
