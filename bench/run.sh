#!/usr/bin/env bash
# Builds Release binaries and runs the benchmarks (not part of the test suite).
#   bench/run.sh ssh [options for ssh_bench.py]
#   bench/run.sh wg  [options for wg_bench.py]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/wsa-ccache}"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSA_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j "${WSA_JOBS:-2}"
what="${1:-ssh}"; shift || true
case "$what" in
  ssh) exec bench/ssh_bench.py --agent build/release/src/agent --controld build/release/src/controld "$@" ;;
  wg) exec bench/wg_bench.py --wsa-wg build/release/src/wsa-wg "$@" ;;
  *) echo "bench/run.sh: unknown benchmark $what (ssh, wg)" >&2; exit 2 ;;
esac
