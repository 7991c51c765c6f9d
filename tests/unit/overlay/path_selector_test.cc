// overlay::PathSelector, the client's choice between the direct path and the relay, driven by
// a ManualClock: every transition, the grace periods and the messages.

#include "wsa/overlay/path_selector.h"

#include <gtest/gtest.h>

#include <vector>

namespace wsa::overlay {
namespace {

using namespace std::chrono_literals;
using State = PathSelector::State;

class PathSelectorTest : public ::testing::Test {
 protected:
  void make(RelayMode mode) {
    PathSelector::Options o;
    o.mode = mode;
    o.agent = "dev";
    PathSelector::Actions a;
    a.use_path = [this](Path p) -> Status {
      paths.push_back(p);
      if (!path_error.empty()) return makeError(path_error);
      return {};
    };
    a.handshake = [this] { ++handshakes; };
    a.dial = [this] { ++dials; };
    a.fail = [this](const std::string& m) { failures.push_back(m); };
    a.has_session = [this] { return session; };
    a.use_paths = [this]() -> Status {
      ++use_paths;
      return {};
    };
    sel = std::make_unique<PathSelector>(clock, o, a);
  }
  static PathSelector::AgentNode direct(bool new_key = false) {
    return {.endpoint = "127.0.0.1:9", .new_key = new_key};
  }
  static PathSelector::AgentNode noEndpoint(bool new_key = false) {
    return {.endpoint = std::nullopt, .new_key = new_key};
  }

  ManualClock clock;
  std::unique_ptr<PathSelector> sel;
  std::vector<Path> paths;
  std::string path_error;
  int handshakes = 0;
  int dials = 0;
  std::vector<std::string> failures;
  bool session = false;
  int use_paths = 0;
  static PathSelector::AgentNode probing(bool with_endpoint = true) {
    return {.endpoint = with_endpoint ? std::optional<std::string>("127.0.0.1:9") : std::nullopt,
            .new_key = false,
            .probes = true};
  }
};

// --- agents that answer probes: PeerPaths chooses, the relay carries the first packets ---

TEST_F(PathSelectorTest, ProbingAutoDialsAsSoonAsTheRelayIsReadyWithoutAGrace) {
  make(RelayMode::kAuto);
  sel->onAgentNode(probing());
  EXPECT_EQ(use_paths, 1);
  EXPECT_TRUE(paths.empty());  // no fixed path
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 0);
  EXPECT_EQ(sel->state(), State::kWaitingForRelay);
  sel->onRelayReady();
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(handshakes, 1);
  EXPECT_EQ(sel->state(), State::kProbing);
  clock.advance(60s);  // no 3 s grace, no fallback: nothing more happens
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(handshakes, 1);
  EXPECT_FALSE(sel->fellBack());
  sel->onAgentNode(probing());  // a node update does not hand the path over again
  EXPECT_EQ(use_paths, 1);
  EXPECT_TRUE(failures.empty());
}

TEST_F(PathSelectorTest, ProbingAutoDialsOnADirectPathBeforeTheRelayIsReady) {
  make(RelayMode::kAuto);
  sel->onAgentNode(probing());
  sel->onReadyForHandshake();
  sel->onDirectPath();
  EXPECT_EQ(dials, 1);
  // Once direct, the relay's end is not fatal.
  sel->onRelayEnded(14, "unavailable");
  EXPECT_TRUE(failures.empty());
}

TEST_F(PathSelectorTest, ProbingAutoFailsWhenTheRelayEndsBeforeADirectPath) {
  make(RelayMode::kAuto);
  sel->onAgentNode(probing());
  sel->onRelayReady();
  sel->onReadyForHandshake();
  sel->onRelayEnded(14, "unavailable");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("relay through the control server ended"), std::string::npos);
}

TEST_F(PathSelectorTest, ProbingNeverWaitsForADirectPathAndNeedsAnEndpoint) {
  make(RelayMode::kNever);
  sel->onAgentNode(probing());
  sel->onRelayReady();
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 0);  // the relay does not count
  sel->onDirectPath();
  EXPECT_EQ(dials, 1);
  make(RelayMode::kNever);
  failures.clear();
  sel->onAgentNode(probing(/*with_endpoint=*/false));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0],
            "the agent publishes no UDP endpoint, and --relay never rules out the relay");
}

TEST_F(PathSelectorTest, ProbingAlwaysDialsThroughTheRelayEvenWithADirectPath) {
  make(RelayMode::kAlways);
  sel->onAgentNode(probing());
  EXPECT_EQ(use_paths, 1);  // PeerPaths' policy (no direct) keeps it on the relay
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 0);
  sel->onRelayReady();
  EXPECT_EQ(dials, 1);
  sel->onRelayEnded(14, "unavailable");
  EXPECT_EQ(failures.size(), 1u);  // the relay is the only path
}

TEST_F(PathSelectorTest, NothingHappensBeforeTheAgentsNode) {
  make(RelayMode::kAuto);
  EXPECT_EQ(sel->state(), State::kWaitingForNode);
  sel->onReadyForHandshake();
  sel->onRelayReady();
  clock.advance(60s);
  EXPECT_EQ(sel->state(), State::kWaitingForNode);
  EXPECT_TRUE(paths.empty());
  EXPECT_EQ(dials, 0);
  EXPECT_EQ(handshakes, 0);
}

TEST_F(PathSelectorTest, AutoGoesDirectAndDialsWhenTheAgentIsReady) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});
  EXPECT_EQ(sel->state(), State::kWaitingForReady);
  EXPECT_EQ(dials, 0);
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(handshakes, 1);  // at once: a forwarder may not send anything for a while
  EXPECT_EQ(sel->state(), State::kTryingDirect);
  EXPECT_EQ(sel->path(), Path::kDirect);
}

TEST_F(PathSelectorTest, AutoFallsBackToTheRelayThreeSecondsAfterTheDialWithoutASession) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  clock.advance(2999ms);
  EXPECT_EQ(sel->state(), State::kTryingDirect);
  EXPECT_FALSE(sel->fellBack());
  clock.advance(1ms);
  EXPECT_TRUE(sel->fellBack());
  // The relay is not ready yet: the path waits for it.
  EXPECT_EQ(sel->state(), State::kWaitingForRelay);
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});
  sel->onRelayReady();
  EXPECT_EQ(paths, (std::vector<Path>{Path::kDirect, Path::kRelay}));
  EXPECT_EQ(sel->state(), State::kRelayed);
  EXPECT_EQ(handshakes, 2);  // a new handshake through the relay
  EXPECT_EQ(dials, 1);       // the dial in progress carries on
  EXPECT_TRUE(failures.empty());
}

TEST_F(PathSelectorTest, AutoFallsBackAtOnceWhenTheRelayIsAlreadyReady) {
  make(RelayMode::kAuto);
  sel->onRelayReady();
  sel->onAgentNode(direct());
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});  // a ready relay does not change auto
  sel->onReadyForHandshake();
  clock.advance(3s);
  EXPECT_EQ(paths, (std::vector<Path>{Path::kDirect, Path::kRelay}));
  EXPECT_EQ(sel->state(), State::kRelayed);
  // A relayed path stays relayed.
  session = true;
  clock.advance(60s);
  sel->onAgentNode(direct());
  EXPECT_EQ(sel->path(), Path::kRelay);
  EXPECT_EQ(paths.size(), 2u);
}

TEST_F(PathSelectorTest, AutoKeepsTheDirectPathWhenTheSessionCameInTime) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  session = true;
  clock.advance(3s);
  EXPECT_FALSE(sel->fellBack());
  EXPECT_EQ(sel->state(), State::kDirect);
  sel->onRelayReady();
  clock.advance(60s);
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});
  EXPECT_EQ(handshakes, 1);
  // Its end does not matter then.
  sel->onRelayEnded(14, "gone");
  EXPECT_TRUE(failures.empty());
}

TEST_F(PathSelectorTest, AutoWithoutAnEndpointUsesTheRelay) {
  make(RelayMode::kAuto);
  sel->onAgentNode(noEndpoint());
  EXPECT_EQ(sel->state(), State::kWaitingForRelay);
  EXPECT_TRUE(sel->relayNeeded());
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 0);  // not before the relay is ready
  sel->onRelayReady();
  EXPECT_EQ(paths, std::vector<Path>{Path::kRelay});
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(handshakes, 1);
  EXPECT_EQ(sel->state(), State::kRelayed);
  clock.advance(60s);  // no direct grace on the relay
  EXPECT_EQ(paths.size(), 1u);
  EXPECT_TRUE(failures.empty());
}

TEST_F(PathSelectorTest, AlwaysWaitsForTheRelay) {
  make(RelayMode::kAlways);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  EXPECT_EQ(sel->state(), State::kWaitingForRelay);
  EXPECT_TRUE(paths.empty());
  EXPECT_EQ(dials, 0);
  clock.advance(10s);
  EXPECT_EQ(dials, 0);
  EXPECT_TRUE(paths.empty());
  sel->onRelayReady();
  EXPECT_EQ(paths, std::vector<Path>{Path::kRelay});
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(sel->state(), State::kRelayed);
  EXPECT_EQ(sel->noHandshakeMessage(),
            "could not reach agent \"dev\": no WireGuard handshake completed through the "
            "control server's relay");
}

TEST_F(PathSelectorTest, NeverWithoutAnEndpointFailsWithTodaysMessage) {
  make(RelayMode::kNever);
  sel->onRelayReady();
  sel->onAgentNode(noEndpoint());
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0],
            "the agent publishes no UDP endpoint, and --relay never rules out the relay");
  EXPECT_EQ(sel->state(), State::kFailed);
  EXPECT_TRUE(paths.empty());
  // Nothing more happens.
  sel->onReadyForHandshake();
  clock.advance(60s);
  EXPECT_EQ(dials, 0);
  EXPECT_EQ(failures.size(), 1u);
}

TEST_F(PathSelectorTest, NeverStaysDirectWithoutAGrace) {
  make(RelayMode::kNever);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  EXPECT_EQ(sel->state(), State::kDirect);
  clock.advance(60s);
  EXPECT_FALSE(sel->fellBack());
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});
  EXPECT_FALSE(sel->relayNeeded());
  EXPECT_EQ(sel->noHandshakeMessage(),
            "could not reach agent \"dev\": no WireGuard handshake completed over UDP to "
            "127.0.0.1:9 (--relay never)");
}

TEST_F(PathSelectorTest, TheReadyFallbackDialsFiveSecondsAfterTheFirstNode) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  clock.advance(4999ms);
  EXPECT_EQ(dials, 0);
  EXPECT_EQ(sel->state(), State::kWaitingForReady);
  sel->onAgentNode(direct());  // a later node does not restart it
  clock.advance(1ms);
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(sel->state(), State::kTryingDirect);
  // The ready that comes late changes nothing.
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 1);
}

TEST_F(PathSelectorTest, TheReadyFallbackIsCancelledByTheDial) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  EXPECT_EQ(clock.pendingTimers(), 1u);  // the ready fallback
  sel->onReadyForHandshake();
  EXPECT_EQ(clock.pendingTimers(), 1u);  // the direct grace only
  EXPECT_EQ(clock.nextDeadline(), std::optional<Duration>(3s));
  session = true;
  clock.advance(60s);
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(clock.pendingTimers(), 0u);
}

TEST_F(PathSelectorTest, AnAgentKeyChangeKeepsThePathAndTheDial) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  // The agent restarted: same endpoint, a new key. The route stays with the peer (use_path is
  // not called again), nothing is dialed again, and the grace still asks for a session — with
  // the new key's peer now.
  sel->onAgentNode(direct(/*new_key=*/true));
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});
  EXPECT_EQ(dials, 1);
  EXPECT_EQ(sel->state(), State::kTryingDirect);
  session = true;
  clock.advance(3s);
  EXPECT_EQ(sel->state(), State::kDirect);
}

TEST_F(PathSelectorTest, AnAgentKeyChangeWithoutAnEndpointTurnsToTheRelay) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  sel->onRelayReady();
  sel->onAgentNode(noEndpoint(/*new_key=*/true));
  EXPECT_EQ(paths, (std::vector<Path>{Path::kDirect, Path::kRelay}));
  EXPECT_EQ(sel->state(), State::kRelayed);
  EXPECT_EQ(handshakes, 2);
  EXPECT_EQ(dials, 1);
}

TEST_F(PathSelectorTest, TheRelayEndingIsFatalWhenItIsThePath) {
  make(RelayMode::kAlways);
  sel->onAgentNode(direct());
  sel->onRelayEnded(14, "server going away");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], "the relay through the control server ended (14: server going away)");
  EXPECT_EQ(sel->state(), State::kFailed);
}

TEST_F(PathSelectorTest, TheRelayEndingBeforeItIsNeededIsOnlyNoted) {
  make(RelayMode::kAuto);
  sel->onRelayReady();
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  sel->onRelayEnded(1, "");
  EXPECT_TRUE(failures.empty());
  // The fallback then waits for a relay that is not there.
  clock.advance(3s);
  EXPECT_EQ(sel->state(), State::kWaitingForRelay);
  sel->onRelayEnded(1, "");  // needed now
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], "the relay through the control server ended (1)");
}

TEST_F(PathSelectorTest, APathThatCannotBeSetFailsWithItsError) {
  make(RelayMode::kAuto);
  path_error = "too many peers";
  sel->onAgentNode(direct());
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], "too many peers");
  EXPECT_EQ(sel->state(), State::kFailed);
  sel->onReadyForHandshake();
  EXPECT_EQ(dials, 0);
}

TEST_F(PathSelectorTest, StopEndsEverything) {
  make(RelayMode::kAuto);
  sel->onAgentNode(direct());
  sel->onReadyForHandshake();
  sel->stop();
  EXPECT_EQ(clock.pendingTimers(), 0u);
  clock.advance(60s);
  sel->onRelayReady();
  sel->onRelayEnded(14, "gone");
  EXPECT_EQ(paths, std::vector<Path>{Path::kDirect});
  EXPECT_TRUE(failures.empty());
  EXPECT_EQ(sel->state(), State::kFailed);
}

}  // namespace
}  // namespace wsa::overlay
