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
  # Runs once (the INT/TERM trap and then the EXIT trap would otherwise signal twice, and a
  # second signal makes the agent skip its graceful shutdown).
  [ -n "${cleaned_up:-}" ] && return
  cleaned_up=1
  # The agent first (it reports its final state and logs to controld), then controld. A second
  # signal (`timeout` signals the process and then its group) interrupts `wait`: wait again
  # until the process is really gone.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    while kill -0 "${pids[i]}" 2>/dev/null; do wait "${pids[i]}" 2>/dev/null || true; done
  done
}
trap cleanup EXIT INT TERM

rm -f "$demo/controld.ready"
# Own sessions (setsid): Ctrl-C reaches only this script, which stops both once, gracefully.
setsid "$bin/controld" --config "$demo/controld.json" --data-dir "$demo/data" \
  --grpc-listen "$grpc" --http-listen "$http" --ready-file "$demo/controld.ready" \
  2> >(trap '' INT; exec tee -a "$demo/controld.log" >&2) &
pids+=($!)
for _ in $(seq 100); do [ -s "$demo/controld.ready" ] && break; sleep 0.1; done
[ -s "$demo/controld.ready" ] || { echo "controld did not start; see $demo/controld.log" >&2; exit 1; }

user_token_file="$demo/user.token"
(umask 077; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"][0]["token"])' \
   "$demo/controld.json" > "$user_token_file")
agent_name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agents"][0]["name"])' "$demo/controld.json")
agent_token_file="$demo/agent.token"
(umask 077; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agents"][0]["token"])' \
   "$demo/controld.json" > "$agent_token_file")
prom="127.0.0.1:${WSA_DEMO_PROMETHEUS_PORT:-2112}"
debug="127.0.0.1:${WSA_DEMO_DEBUG_PORT:-2113}"
pty="127.0.0.1:${WSA_DEMO_PTY_PORT:-7102}"
speed="127.0.0.1:${WSA_DEMO_SPEEDTEST_PORT:-7103}"
api="127.0.0.1:${WSA_DEMO_API_PORT:-7104}"
# As root (with wireguard-go), the demo also gives a way in through the overlay: a network
# namespace "wsa-demo" whose WireGuard interface (wireguard-go) is a static peer of the agent.
overlay_demo=0
if [ "$(id -u)" -eq 0 ] && command -v wireguard-go >/dev/null && [ -c /dev/net/tun ]; then
  overlay_demo=1
fi
agent_wg=wsademo-agent
overlay_args=()
if [ $overlay_demo -eq 1 ]; then
  mkdir -p /var/run/wireguard
  overlay_args=(--overlay-port 51830 --overlay-config-socket "/var/run/wireguard/$agent_wg.sock")
fi
overlay_cleanup() {
  if [ $overlay_demo -eq 1 ]; then
    [ -n "${go_pid:-}" ] && kill -TERM "$go_pid" 2>/dev/null
    ip netns del wsa-demo 2>/dev/null || true
  fi
}

rm -f "$demo/agent.ready"
setsid "$bin/agent" --url "http://$grpc" --token-file "$agent_token_file" \
  --log-dir "$demo/agent-logs" --script-data-dir "$demo/agent-data" \
  --prometheus-address "$prom" --debug-address "$debug" --ready-file "$demo/agent.ready" \
  --pty-listen "$pty" --speedtest-listen "$speed" --api-listen "$api" \
  --overlay-endpoint 127.0.0.1 "${overlay_args[@]}" &
pids+=($!)
for _ in $(seq 100); do [ -s "$demo/agent.ready" ] && break; sleep 0.1; done
[ -s "$demo/agent.ready" ] || { echo "the agent did not start" >&2; exit 1; }

way_in=""
if [ $overlay_demo -eq 1 ]; then
  trap 'overlay_cleanup; cleanup' EXIT INT TERM
  for _ in $(seq 100); do [ -S "/var/run/wireguard/$agent_wg.sock" ] && break; sleep 0.1; done
  agent_v4=""
  for _ in $(seq 50); do  # the agent's log file is flushed every second
    agent_v4=$( (grep -ho 'overlay up: addresses [0-9.]*' "$demo/agent-logs/wsa-agent.log" \
                 2>/dev/null || true) | tail -1 | awk '{print $4}')
    [ -n "$agent_v4" ] && break
    sleep 0.1
  done
  if [ -S "/var/run/wireguard/$agent_wg.sock" ] && [ -n "$agent_v4" ]; then
    ip netns del wsa-demo 2>/dev/null || true
    ip netns add wsa-demo
    ip link add wsademo-u0 type veth peer name wsademo-u1
    ip link set wsademo-u1 netns wsa-demo
    ip addr add 198.18.253.1/30 dev wsademo-u0 && ip link set wsademo-u0 up
    ip -n wsa-demo addr add 198.18.253.2/30 dev wsademo-u1
    ip -n wsa-demo link set wsademo-u1 up && ip -n wsa-demo link set lo up
    ip netns exec wsa-demo env LOG_LEVEL=error wireguard-go -f wsademo-go >"$demo/wireguard-go.log" 2>&1 &
    go_pid=$!
    for _ in $(seq 100); do [ -S /var/run/wireguard/wsademo-go.sock ] && break; sleep 0.1; done
    (umask 077; wg genkey > "$demo/peer.key")
    agent_pub=$(wg show "$agent_wg" public-key)
    wg set "$agent_wg" peer "$(wg pubkey < "$demo/peer.key")" allowed-ips 100.64.250.2/32
    ip netns exec wsa-demo wg set wsademo-go private-key "$demo/peer.key" peer "$agent_pub" \
      allowed-ips "$agent_v4/32" endpoint 198.18.253.1:51830 persistent-keepalive 25
    ip -n wsa-demo addr add 100.64.250.2/32 dev wsademo-go
    ip -n wsa-demo link set wsademo-go up
    ip -n wsa-demo route add "$agent_v4/32" dev wsademo-go
    way_in="
    A way in through the overlay (namespace wsa-demo, wireguard-go peer of the agent at $agent_v4):
      sudo ip netns exec wsa-demo ssh -o StrictHostKeyChecking=no $(id -un)@$agent_v4
      sudo ip netns exec wsa-demo curl -s http://$agent_v4:4/api/v0/listening-ports
      sudo ip netns exec wsa-demo $bin/wsa-speedtest $agent_v4:3 -t 3s
      sudo wg show $agent_wg                       # the agent's WireGuard state
"
  fi
fi

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

    The way in through the overlay, as a user (the wsa client joins the overlay itself):
      ssh -o ProxyCommand='$bin/wsa --url http://$grpc --token-file $user_token_file proxy %h 22' \\
          $(id -un)@$agent_name
      printf 'GET /api/v0/listening-ports HTTP/1.0\\r\\n\\r\\n' | \\
          $bin/wsa --url http://$grpc --token-file $user_token_file proxy $agent_name 4
$way_in
    Ctrl-C stops everything. State: $demo
MSG
wait
