#!/usr/bin/env bash
# Installs the Debian 12 packages agentbus needs, and only those that are missing.
# Idempotent: a second run installs nothing and does not touch the network.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libzmq3-dev cppzmq-dev
  libtss2-dev swtpm swtpm-tools tpm2-tools
  libssl-dev openssl
  libmsgpack-cxx-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libsqlite3-dev sqlite3 graphviz
  libjemalloc-dev
  clang libclang-rt-14-dev
  pybind11-dev python3-dev python3-pytest dpkg-dev
  libsystemd-dev
  prometheus-cpp-dev prometheus
  nats-server libnats-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
