#pragma once
// The subcommands, each a function over a session to the agent. They return how `wsa` exits.

#include <string>

#include "client/exit.h"
#include "client/options.h"

namespace wsa::client {

class Session;

// `wsa proxy AGENT PORT`: stdin/stdout joined to the agent's overlay `port` (an ssh
// ProxyCommand), until either side ends.
Exit runProxy(Session& session, uint16_t port);

// `wsa forward AGENT SPEC`: a local listener whose connections each go to the agent's overlay
// port, until SIGINT or SIGTERM; with `--udp`, a local UDP socket whose source addresses are
// each a UDP flow to the agent's port.
Exit runForward(Session& session, const ForwardSpec& spec);

// `wsa speedtest AGENT`: throughput to the agent's speed test (overlay port 3), printed as a
// table or JSON.
Exit runSpeedtest(Session& session, const SpeedtestOptions& options);

// `wsa ping AGENT [-c N] [-i 1s] [--json]`: path probes to the agent, each answer with its path
// (direct and the endpoint, or the relay) and latency; says when the path changed. Exit 1 when
// nothing answered.
Exit runPing(Session& session, const PingOptions& options);

// `wsa netcheck [--json]`: one STUN round to the relay map's STUN servers from a fresh UDP
// socket: the reflexive address, whether the NAT's mapping varies by destination, the latency
// to each region and the preferred (nearest) one. Needs no agent.
Exit runNetcheck(const std::string& url, const std::string& token, bool json);

}  // namespace wsa::client
