#!/usr/bin/env bash
# The README's first command: install what is missing, build, run the main job.
# Today the main job starts a private swtpm, creates one TPM identity key per role
# of config/policy.toml, seals and verifies a sample envelope with each (in-process
# and with the openssl CLI), checks that a tampered copy is refused, and prints a
# table. Extra arguments go to agentbus-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec "${AGENTBUS_BUILD_DIR:-build}/tools/agentbus-demo" --policy config/policy.toml "$@"
