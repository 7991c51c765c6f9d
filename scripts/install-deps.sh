#!/usr/bin/env bash
# Installs every Debian 12 package the project needs to build, test and run.
# Idempotent: packages already present are skipped and nothing is printed for them.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds what bench/ needs: OpenSSH's sshd, iperf3)
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake ninja-build pkg-config ccache git
  libasio-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssh-dev libspdlog-dev libfmt-dev prometheus-cpp-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsodium-dev libssl-dev libsqlite3-dev
  libcurl4-openssl-dev libvterm-dev
)
# Real peers and tools the integration tests drive (never faked there).
TEST_PKGS=(
  openssh-client openssh-sftp-server openssl curl tmux xauth
  wireguard-tools wireguard-go iproute2 iptables iputils-ping netcat-openbsd socat
  prometheus sqlite3 procps psmisc vim
  python3
)
# Checks scripts/test.sh runs: scripts/lint.sh (clang-format 14, clang-tidy 14) and the layering
# check (python3, above).
LINT_PKGS=(clang-format clang-tidy)

# Peers the benchmarks compare against (not needed for tests; sshd would start as a service
# where systemd runs, so it is only installed on request).
BENCH_PKGS=(openssh-server python3 iperf3)

want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${LINT_PKGS[@]}")
[ "${1:-}" = "--bench" ] && want+=("${BENCH_PKGS[@]}")
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
# lwIP's source for the userspace TCP/IP stack (a Debian source package, into a cache; as the
# calling user, no root needed). Quiet when it is already there.
fetch_sources() { "$(dirname "$0")/fetch-lwip.sh"; }

if [ ${#missing[@]} -eq 0 ]; then
  fetch_sources
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The prometheus package starts a server on :9090 as a service where systemd runs; we only
# need promtool. Stop it if it came up so it does not hold a port (harmless if absent).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
fetch_sources
echo "install-deps: done" >&2
