#!/usr/bin/env bash
# Style and static checks on our sources: clang-format (check only) and clang-tidy with the
# checked-in .clang-tidy, using build/debug/compile_commands.json.
#   scripts/lint.sh [files...]     default: every .cc/.h under src/ include/ tests/
set -euo pipefail
cd "$(dirname "$0")/.."
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(git ls-files 'src/*.cc' 'src/*.h' 'include/*.h' 'tests/*.cc' 'tests/*.h')
fi
[ -f build/debug/compile_commands.json ] || cmake -S . -B build/debug -G Ninja >/dev/null
status=0
echo "==> clang-format"
clang-format --dry-run "${files[@]}" 2>&1 | grep -c "warning:" | xargs -I{} echo "{} formatting difference(s) (run clang-format -i on the files to fix)" || true
echo "==> clang-tidy"
for f in "${files[@]}"; do
  case "$f" in *.cc) ;; *) continue ;; esac
  clang-tidy -p build/debug --quiet --extra-arg=-DASIO_HAS_CO_AWAIT=1 \
    --extra-arg=-DASIO_HAS_STD_COROUTINE=1 "$f" 2>/dev/null | grep -E "warning:|error:" || true
done
exit $status
