#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ with clang (ASan + UBSan) into build-fuzz
# (or $AGENTBUS_FUZZ_BUILD_DIR) and runs each for FUZZ_SECONDS (default 60) from its seed
# corpus in fuzz/corpus/<harness>/. New inputs go to <build>/corpus/<harness>/ (the
# repository's corpus is only read); a crash leaves its input as
# <build>/corpus/<harness>-crash-* and fails the script. The harnesses run side by side,
# as many at once as there are cores. The README's test command runs this for 8 s per
# harness; run it for as long as you like:
#   FUZZ_SECONDS=3600 scripts/fuzz.sh
#   FUZZ_ONLY=fuzz_handshake FUZZ_SECONDS=600 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
build_dir="${AGENTBUS_FUZZ_BUILD_DIR:-build-fuzz}"
harnesses=(fuzz_envelope fuzz_handshake fuzz_control fuzz_wire_batch fuzz_admin fuzz_policy fuzz_config)
if [ -n "${FUZZ_ONLY:-}" ]; then harnesses=("$FUZZ_ONLY"); fi
# Line tables (-g1) are all a crash report needs (scripts/build.sh says why not -g).
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENTBUS_FUZZ=ON \
  -DAGENTBUS_BUILD_TESTS=OFF -DAGENTBUS_JEMALLOC=OFF -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target fuzzers
work="$build_dir/corpus"
# The harnesses run side by side, one per core: each gets FUZZ_SECONDS of a core.
run_one() {
  local f="$1" log="$work/$1.log"
  mkdir -p "$work/$f"
  if ! "$build_dir/fuzz/$f" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$work/$f-" -print_final_stats=1 "$work/$f" "fuzz/corpus/$f" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $f FAILED: the input is in $work/$f-*; replay it with $build_dir/fuzz/$f <file>" >&2
    return 1
  fi
  local runs
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz: $f: $runs inputs in $seconds s, nothing found"
}
jobs_at_once="$(nproc)"
failed=0
for ((i = 0; i < ${#harnesses[@]}; i += jobs_at_once)); do
  pids=()
  for f in "${harnesses[@]:i:jobs_at_once}"; do
    run_one "$f" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
done
exit "$failed"
