#pragma once
// Running as PID 1 (a container entrypoint): the process forks, the child re-executes the
// agent with --no-reap, and the parent stays PID 1 to reap every orphaned zombie and forward
// signals to the agent, exiting with the agent's exit code.

namespace wsa::agent {

// Returns -1 if this process should go on as the agent (not PID 1, or already the child);
// otherwise runs the reaper and returns the exit code for main.
int maybeRunReaper(int argc, char** argv, bool no_reap);

}  // namespace wsa::agent
