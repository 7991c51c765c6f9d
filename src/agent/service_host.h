#pragma once
// What the services (SSH, reconnecting PTY, speed test, HTTP API, overlay) need from the agent,
// and all they may use of it: the services never see the Agent itself. The agent implements
// this; it tells the services when any of it changed through AgentExtension::contextChanged.
// Loop thread only.

#include <memory>
#include <string>
#include <vector>

#include "wsa/agent/v1/banner.pb.h"
#include "wsa/agent/v1/connection.pb.h"
#include "wsa/agent/v1/manifest.pb.h"

namespace wsa::exec {
struct CommandContext;
}

namespace wsa::agent {

class ServiceHost {
 public:
  virtual ~ServiceHost() = default;
  // What the commands of sessions are built from (never null); a new snapshot whenever it
  // changes.
  virtual std::shared_ptr<const exec::CommandContext> commandContext() const = 0;
  // The current manifest (null before the first): overlay addresses, agent id, MOTD.
  virtual std::shared_ptr<const v1::Manifest> manifest() const = 0;
  // The announcement banners interactive sessions are greeted with.
  virtual const std::vector<v1::BannerConfig>& banners() const = 0;
  // Queues a connection audit report.
  virtual void reportConnection(v1::ReportConnectionRequest r) = 0;
  // The manifest as JSON without its secrets (the HTTP API's /debug/manifest).
  virtual std::string debugManifest() const = 0;
};

}  // namespace wsa::agent
