#!/usr/bin/env bash
# Puts lwIP's source (Debian's lwip 2.1.3+dfsg1 orig tarball, BSD-3-Clause) into a cache
# directory, checked against its SHA-256. The agent's userspace TCP/IP stack is compiled from
# it with our own options (src/netstack/port/lwipopts.h); nothing is committed to the repository.
#
# The tarball comes from the Debian archive this machine already uses: a private deb-src list is
# derived from the system's apt sources, and the system's apt state is not touched.
# Usage: scripts/fetch-lwip.sh [CACHE_DIR]   (default: $WSA_DEPS_CACHE or ~/.cache/wsa-deps)
set -euo pipefail

NAME=lwip_2.1.3+dfsg1.orig.tar.xz
SHA256=0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24
CACHE="${1:-${WSA_DEPS_CACHE:-$HOME/.cache/wsa-deps}}"
mkdir -p "$CACHE"

check() { echo "$SHA256  $1" | sha256sum -c --status; }
if [ -f "$CACHE/$NAME" ] && check "$CACHE/$NAME"; then
  exit 0
fi

D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
mkdir -p "$D/parts" "$D/lists/partial" "$D/dl"
n=0
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  sed 's/^Types:.*$/Types: deb-src/' "$f" > "$D/parts/src$n.sources"; n=$((n + 1))
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  grep -E '^deb ' "$f" | sed 's/^deb /deb-src /' > "$D/parts/src$n.list" || true; n=$((n + 1))
done
O=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$D/parts"
   -o "Dir::State::Lists=$D/lists" -o Debug::NoLocking=1)
echo "fetch-lwip: downloading the lwip source package index (private deb-src list)" >&2
# A source index that fails (say, a security mirror without deb-src) does not matter as long as
# the main archive's index arrives: what counts is whether the tarball can be downloaded.
apt-get "${O[@]}" -qq update >"$D/update.log" 2>&1 || true
if ! (cd "$D/dl" && apt-get "${O[@]}" -qq source --download-only lwip >"$D/source.log" 2>&1); then
  cat "$D/update.log" "$D/source.log" >&2
  echo "fetch-lwip: could not download Debian's lwip source package" >&2
  exit 1
fi
if [ ! -f "$D/dl/$NAME" ] || ! check "$D/dl/$NAME"; then
  echo "fetch-lwip: $NAME missing or its SHA-256 is not $SHA256" >&2
  ls -l "$D/dl" >&2
  exit 1
fi
mv "$D/dl/$NAME" "$CACHE/$NAME"
echo "fetch-lwip: $CACHE/$NAME" >&2
