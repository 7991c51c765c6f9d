#pragma once
// How the agent drives what is built on it (the services) without knowing it: an extension is
// told when graceful shutdown begins and when what sessions see changes, gives the routines it
// wants supervised on each control connection, and adds its figures to the stats reports.
// main.cc registers extensions with Agent::addExtension. Loop thread only.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/supervisor.h"
#include "wsa/agent/v1/stats.pb.h"

namespace wsa::agent {

class AgentApi;

class AgentExtension {
 public:
  // A routine for one control connection.
  struct ConnectionRoutine {
    std::string name;
    Behavior behavior = Behavior::kRemain;
    // Called once the connection's manifest call has succeeded; returning null means nothing to
    // do on this connection (an idle routine stands in).
    std::function<std::shared_ptr<Routine>()> make;
  };

  virtual ~AgentExtension() = default;
  // Graceful shutdown began: accept no new sessions.
  virtual void stopAccepting() = 0;
  // The command context, the manifest or the banners changed (ServiceHost has the new ones).
  virtual void contextChanged() = 0;
  // The routines to supervise on a new control connection; `api` outlives them.
  virtual std::vector<ConnectionRoutine> routinesFor(AgentApi& api) = 0;
  // Adds the extension's figures to a stats report.
  virtual void fillStats(v1::Stats* stats) = 0;
};

}  // namespace wsa::agent
