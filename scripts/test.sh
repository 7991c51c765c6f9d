#!/usr/bin/env bash
# Installs dependencies, checks formatting (clang-format, seconds), builds and runs every test: a
# Debug build (warnings are errors) and its tests (the layering check among them, ctest
# "layering"), an ASan+UBSan build of the same tests; then checks that the Release build the demo
# uses compiles (the optimizer finds warnings Debug does not). This is the command CI runs
# (.ci/run).
#
#   scripts/test.sh                 everything
#   scripts/test.sh --quick         Debug build only (no sanitizer or Release build)
#   scripts/test.sh --label unit    only tests labelled unit (or integration)
#   scripts/test.sh --no-deps       skip the apt-get step
#   scripts/test.sh --tidy          also clang-tidy after the Debug build (scripts/lint.sh
#                                   --tidy-only: ~20 CPU minutes, ~10 min on 2 cores; not in CI)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; label=""; deps=1; tidy=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --label) label="$2"; shift ;;
    --no-deps) deps=0 ;;
    --tidy) tidy=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

[ $deps -eq 1 ] && scripts/install-deps.sh
start=$(date +%s)
echo "==> Lint: clang-format"
scripts/lint.sh --format-only
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/wsa-ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"  # clones in other folders share the cache
jobs="${WSA_JOBS:-2}"
ctest_args=(--output-on-failure -j "$jobs" --timeout 300)
[ -n "$label" ] && ctest_args+=(-L "$label")

build() {  # build <dir> <extra cmake args...>
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

echo "==> Debug build (-Werror)"
build build/debug
if [ $tidy -eq 1 ]; then
  echo "==> Lint: clang-tidy"
  WSA_LINT_BUILD=build/debug WSA_JOBS="$jobs" scripts/lint.sh --tidy-only
fi
echo "==> Debug tests"
(cd build/debug && ctest "${ctest_args[@]}")

if [ $quick -eq 0 ]; then
  echo "==> ASan+UBSan build"
  build build/asan -DWSA_SANITIZE=ON
  echo "==> ASan+UBSan tests"
  (cd build/asan && \
   ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1" \
   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
   LSAN_OPTIONS="suppressions=$PWD/../../scripts/lsan.supp:print_suppressions=0" \
   WSA_TEST_TIMEOUT_SCALE=3 ctest "${ctest_args[@]}")
  echo "==> Release build (programs only, -Werror)"
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSA_BUILD_TESTS=OFF >/dev/null
  cmake --build build/release -j "$jobs"
fi
echo "==> all tests passed in $(( $(date +%s) - start )) s"
