#!/usr/bin/env bash
# The main job: installs dependencies, builds (Release), and runs the reference control server
# with an example workspace on loopback, and the agent of that workspace against it.
# Ctrl-C stops both (the agent shuts down gracefully: stop scripts, final state, logs).
#
#   scripts/demo.sh            state in build/demo (config, database, logs)
#   WSA_DEMO_DIR=/some/dir scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/wsa-ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"  # clones in other folders share the cache
echo "==> building (Release)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSA_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j "${WSA_JOBS:-2}"

demo="${WSA_DEMO_DIR:-$root/build/demo}"
mkdir -p "$demo"
chmod 700 "$demo"
bin="$root/build/release/src"
if [ ! -f "$demo/controld.json" ]; then
  (umask 077; "$bin/controld" --example-config > "$demo/controld.json")
fi
grpc="127.0.0.1:${WSA_DEMO_GRPC_PORT:-7070}"
http="127.0.0.1:${WSA_DEMO_HTTP_PORT:-7080}"
admin_token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_token"])' "$demo/controld.json")

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

rm -f "$demo/controld.ready"
"$bin/controld" --config "$demo/controld.json" --data-dir "$demo/data" \
  --grpc-listen "$grpc" --http-listen "$http" --ready-file "$demo/controld.ready" \
  2> >(tee -a "$demo/controld.log" >&2) &
pids+=($!)
for _ in $(seq 100); do [ -s "$demo/controld.ready" ] && break; sleep 0.1; done
[ -s "$demo/controld.ready" ] || { echo "controld did not start; see $demo/controld.log" >&2; exit 1; }

agent_token_file="$demo/agent.token"
(umask 077; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agents"][0]["token"])' \
   "$demo/controld.json" > "$agent_token_file")
prom="127.0.0.1:${WSA_DEMO_PROMETHEUS_PORT:-2112}"
debug="127.0.0.1:${WSA_DEMO_DEBUG_PORT:-2113}"
pty="127.0.0.1:${WSA_DEMO_PTY_PORT:-7102}"
speed="127.0.0.1:${WSA_DEMO_SPEEDTEST_PORT:-7103}"
api="127.0.0.1:${WSA_DEMO_API_PORT:-7104}"
rm -f "$demo/agent.ready"
"$bin/agent" --url "http://$grpc" --token-file "$agent_token_file" \
  --log-dir "$demo/agent-logs" --script-data-dir "$demo/agent-data" \
  --prometheus-address "$prom" --debug-address "$debug" --ready-file "$demo/agent.ready" \
  --pty-listen "$pty" --speedtest-listen "$speed" --api-listen "$api" &
pids+=($!)
for _ in $(seq 100); do [ -s "$demo/agent.ready" ] && break; sleep 0.1; done
[ -s "$demo/agent.ready" ] || { echo "the agent did not start" >&2; exit 1; }

cat <<MSG

==> controld and the agent of workspace "dev" are running
    gRPC (agents, clients):  http://$grpc
    admin API:               http://$http   (token in $demo/controld.json)
    agent metrics / debug:   http://$prom/metrics   http://$debug/debug/state
    agent services:          HTTP API http://$api/   speed test $speed   reconnecting PTY $pty

    Try:
      curl -s -H 'Authorization: Bearer $admin_token' http://$http/api/v1/agents
      curl -s -H 'Authorization: Bearer $admin_token' http://$http/api/v1/agents/dev
      curl -s -X PUT -H 'Authorization: Bearer $admin_token' \\
           -d '{"enabled":true,"message":"hello"}' http://$http/api/v1/banner
      curl -s -X POST -H 'Authorization: Bearer $admin_token' \\
           http://$http/api/v1/agents/dev/shutdown      # graceful, server-initiated
      curl -s http://$debug/debug/state
      curl -s http://$api/api/v0/listening-ports
      $bin/wsa-speedtest $speed -t 3s            # -d upload for the other direction

    Ctrl-C stops everything. State: $demo
MSG
wait
