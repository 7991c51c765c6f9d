#!/usr/bin/env bash
# Style and static checks on our C++ sources; exits non-zero on any finding.
#   clang-format (14, .clang-format): every file must be formatted exactly. Fast (seconds).
#   clang-tidy (14, .clang-tidy): the enforced checks, all errors. Needs a Debug build
#     (build/debug/compile_commands.json and the generated protobuf headers).
#
#   scripts/lint.sh                  both
#   scripts/lint.sh --format-only    clang-format only (scripts/test.sh runs this first)
#   scripts/lint.sh --tidy-only      clang-tidy only (~20 CPU minutes: scripts/test.sh --tidy)
#   scripts/lint.sh --fix            reformat the mis-formatted files in place (clang-format -i)
#   scripts/lint.sh [options] FILE...   only these files (default: every C++ file under src/
#                                       include/ tests/ bench/, tracked or new)
# Environment: CLANG_FORMAT, CLANG_TIDY (programs), WSA_LINT_BUILD (build dir, default
# build/debug), WSA_JOBS (clang-tidy processes, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

format=1; tidy=1; fix=0; files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --format-only) tidy=0 ;;
    --tidy-only) format=0 ;;
    --fix) fix=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "lint.sh: unknown option $1" >&2; exit 2 ;;
    *) files+=("$1") ;;
  esac
  shift
done
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
    'src/*.cc' 'src/*.h' 'include/*.h' 'tests/*.cc' 'tests/*.h' \
    'bench/*.cc' 'bench/*.cpp' 'bench/*.h' 'bench/*.hpp' | sort -u)
  existing=()
  for f in "${files[@]}"; do
    if [ -f "$f" ]; then existing+=("$f"); fi  # not the deleted ones
  done
  files=("${existing[@]}")
fi
if [ ${#files[@]} -eq 0 ]; then
  echo "lint.sh: no files to check (the default list comes from git ls-files)" >&2
  exit 2
fi

tool() {  # tool <env value> <name>: the versioned program if there, else the plain one
  local want=$1 name=$2
  if [ -n "$want" ]; then echo "$want"; return; fi
  if command -v "$name-14" >/dev/null 2>&1; then echo "$name-14"; else echo "$name"; fi
}
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "lint.sh: $1 not found; scripts/install-deps.sh installs it (Debian package ${2})" >&2
    exit 2
  fi
}

status=0
if [ $format -eq 1 ]; then
  cf=$(tool "${CLANG_FORMAT:-}" clang-format)
  need "$cf" clang-format
  version=$("$cf" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
  if [ "$version" != 14 ]; then
    echo "lint.sh: warning: $cf is version ${version:-unknown}; the tree is formatted with" \
         "clang-format 14 and other versions format some code differently" >&2
  fi
  start=${EPOCHREALTIME/./}
  out=$("$cf" --dry-run --Werror "${files[@]}" 2>&1) && rc=0 || rc=$?
  mapfile -t bad < <(printf '%s\n' "$out" |
    sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' | sort -u)
  ms=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
  if [ ${#bad[@]} -gt 0 ]; then
    if [ $fix -eq 1 ]; then
      "$cf" -i "${bad[@]}"
      printf 'lint.sh: reformatted %s\n' "${bad[@]}"
    else
      echo "==> clang-format: ${#bad[@]} file(s) not formatted; fix each with clang-format -i FILE"
      echo "    (or all at once: scripts/lint.sh --fix):"
      printf '      clang-format -i %s\n' "${bad[@]}"
      status=1
    fi
  elif [ $rc -ne 0 ]; then
    printf '%s\n' "$out" >&2
    echo "==> clang-format failed (exit $rc)" >&2
    status=1
  else
    echo "==> clang-format: ${#files[@]} files formatted (${ms} ms)"
  fi
fi

if [ $tidy -eq 1 ]; then
  ct=$(tool "${CLANG_TIDY:-}" clang-tidy)
  need "$ct" clang-tidy
  build="${WSA_LINT_BUILD:-build/debug}"
  if [ ! -f "$build/compile_commands.json" ]; then
    echo "lint.sh: $build/compile_commands.json missing; build Debug first:" \
         "cmake -S . -B $build -G Ninja && cmake --build $build" >&2
    exit 2
  fi
  # Translation units only (headers are checked through them, .clang-tidy's HeaderFilterRegex),
  # and only those the build compiles.
  declare -A compiled
  while read -r f; do compiled[$f]=1; done < <(
    sed -n 's/^ *"file": "\(.*\)",*$/\1/p' "$build/compile_commands.json")
  units=()
  here=$(pwd -P)
  for f in "${files[@]}"; do
    case "$f" in *.cc|*.cpp) if [ -n "${compiled[$here/$f]:-}" ]; then units+=("$f"); fi ;; esac
  done
  start=$(date +%s)
  logs=$(mktemp -d)
  trap 'rm -rf "$logs"' EXIT
  # One log per unit; a unit with a finding exits non-zero (WarningsAsErrors). The compile
  # commands are GCC's: clang does not know some of its warning options (-Wno-restrict), and
  # its own warnings are not ours to enforce here (-Wno-error: .clang-tidy does not list them).
  tidy_one() {
    local log="$logs/${1//\//_}"
    "$ct" -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-error \
      "$1" >"$log" 2>&1 || touch "$log.failed"
  }
  export -f tidy_one
  export ct build logs
  printf '%s\n' "${units[@]}" | xargs -r -P "${WSA_JOBS:-2}" -I{} bash -c 'tidy_one "$1"' _ {}
  failed=()
  for f in "${units[@]}"; do
    if [ -e "$logs/${f//\//_}.failed" ]; then failed+=("$f"); fi
  done
  secs=$(( $(date +%s) - start ))
  if [ ${#failed[@]} -gt 0 ]; then
    echo "==> clang-tidy: findings in ${#failed[@]} of ${#units[@]} files (${secs} s):"
    for f in "${failed[@]}"; do cat "$logs/${f//\//_}"; done |
      grep -E '(warning|error):' | sed "s#^$here/##" | sort -u || true
    printf '    from %s\n' "${failed[@]}"
    echo "    (full output: clang-tidy -p $build FILE)"
    status=1
  else
    echo "==> clang-tidy: ${#units[@]} files clean (${secs} s)"
  fi
fi
exit $status
