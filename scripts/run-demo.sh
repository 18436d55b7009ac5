#!/usr/bin/env bash
# The README's first command: install what is missing, build, run the main job.
#  1. Hardware identities: a private swtpm, one TPM identity key per role of
#     config/policy.toml, a sample envelope sealed and verified with each (in-process
#     and with the openssl CLI), a tampered copy refused: one table row per role.
#  2. The bus: one swtpm per identity, agentbus-broker, the DIRECTOR, MONITOR and
#     ARCHITECT example agents talking directly and over topics, and a rogue agent
#     whose every misbehaviour is refused with its reason.
# Extra arguments go to scripts/bus-demo.sh (e.g. --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build_dir="${AGENTBUS_BUILD_DIR:-build}"
echo "== 1. Hardware identities, one per policy role =="
"$build_dir/tools/agentbus-demo" --policy config/policy.toml
echo
echo "== 2. The bus: broker, agents, and a rogue =="
exec bash scripts/bus-demo.sh --build-dir "$build_dir" "$@"
