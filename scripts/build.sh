#!/usr/bin/env bash
# Configures and builds agentbus into ./build (or $AGENTBUS_BUILD_DIR).
# Warnings are errors (the project targets Debian 12's GCC exactly); AGENTBUS_WERROR=0
# turns that off. AGENTBUS_SANITIZE=1 builds with ASan+UBSan (use its own build dir:
# AGENTBUS_BUILD_DIR=build-asan); AGENTBUS_TSAN=1 with ThreadSanitizer
# (AGENTBUS_BUILD_DIR=build-tsan; docs/testing.md). The demo and the tests share one configuration, so
# running one after the other does not rebuild everything.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${AGENTBUS_BUILD_DIR:-build}"
werror=ON
if [ "${AGENTBUS_WERROR:-1}" = "0" ]; then werror=OFF; fi
sanitize=OFF
if [ "${AGENTBUS_SANITIZE:-}" = "1" ]; then sanitize=ON; fi
tsan=OFF
if [ "${AGENTBUS_TSAN:-}" = "1" ]; then tsan=ON; fi
# Line tables only (-g1): backtraces, gdb and sanitizer reports keep file:line; full
# debug info (variables, types) made every file ~35% slower to compile on 2 cores
# (enrolment.cpp 11.4 s -> 8.3 s, bus_test.cpp 16.2 s -> 10.2 s). AGENTBUS_FULL_DEBUG=1
# builds with -g.
debug_level=-g1
if [ "${AGENTBUS_FULL_DEBUG:-}" = "1" ]; then debug_level=-g; fi
# Prefix /usr: what the Debian package installs to (the unit and the installed config
# name absolute paths); `cmake --install` elsewhere takes DESTDIR (docs/install.md).
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr -DAGENTBUS_WERROR="$werror" -DAGENTBUS_SANITIZE="$sanitize" \
  -DAGENTBUS_TSAN="$tsan" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 $debug_level -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 $debug_level -DNDEBUG" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
