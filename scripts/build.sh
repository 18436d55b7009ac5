#!/usr/bin/env bash
# Configures and builds agentbus into ./build (or $AGENTBUS_BUILD_DIR).
# AGENTBUS_SANITIZE=1 builds with ASan+UBSan; CI=true turns warnings into errors.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${AGENTBUS_BUILD_DIR:-build}"
werror=OFF
if [ "${CI:-}" = "true" ] || [ "${AGENTBUS_WERROR:-}" = "1" ]; then werror=ON; fi
sanitize=OFF
if [ "${AGENTBUS_SANITIZE:-}" = "1" ]; then sanitize=ON; fi
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENTBUS_WERROR="$werror" -DAGENTBUS_SANITIZE="$sanitize" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
