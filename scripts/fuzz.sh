#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang into build-fuzz/ and
# runs each for a bounded time from its seed corpus; fails on any crash,
# leak, sanitizer report, timeout or out-of-memory input, which is kept in
# build-fuzz/crashes/<target>/ (copy it to tests/fuzz/regressions/<target>/,
# named after the bug, once fixed: the CTest replayers run it from then on).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 20)] [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-20}"
shift || true
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPSFORGE_FUZZ=ON \
  -DPSFORGE_JEMALLOC=OFF >/dev/null
# psforge_worker too: clang checks its locking annotations (-Wthread-safety).
cmake --build build-fuzz -j "$(nproc)" --target fuzzers psforge_worker
targets=("$@")
if (( ${#targets[@]} == 0 )); then
  targets=($(sed -n 's/^set(PSFORGE_FUZZERS \(.*\))$/\1/p' tests/fuzz/CMakeLists.txt))
fi
failed=()
for t in "${targets[@]}"; do
  work="build-fuzz/corpus/$t" crashes="build-fuzz/crashes/$t"
  mkdir -p "$work" "$crashes"
  echo "fuzz: $t for ${seconds} s"
  if ! build-fuzz/bin/fuzz_"$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$crashes/" -print_final_stats=1 "$work" "tests/fuzz/corpus/$t" \
       >"build-fuzz/$t.log" 2>&1; then
    failed+=("$t")
    grep -E "ERROR|SUMMARY|Test unit written" "build-fuzz/$t.log" | head -5 || true
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "build-fuzz/$t.log" | tr '\n' ' ' || true
  echo
done
if (( ${#failed[@]} > 0 )); then
  echo "fuzz: crashes in ${failed[*]} (logs: build-fuzz/<target>.log, inputs: build-fuzz/crashes/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no crash"
