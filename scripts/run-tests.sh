#!/usr/bin/env bash
# The README's second command (and CI's): install what is missing, build with
# warnings as errors, run every test (unit tests and integration tests against
# real swtpm processes) with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build_dir="${AGENTBUS_BUILD_DIR:-build}"
(cd "$build_dir" && ctest --output-on-failure -j"$(nproc)" --timeout 600)
# A short run of every fuzzing harness (scripts/fuzz.sh runs them as long as one likes).
FUZZ_SECONDS="${FUZZ_SECONDS:-8}" bash scripts/fuzz.sh
