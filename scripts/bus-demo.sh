#!/usr/bin/env bash
# scripts/bus-demo.sh — the bus demo: a broker and four example agents, every
# identity in its own swtpm (as if each ran on its own host), then a summary.
#
#   1. a temp state dir; one swtpm per identity (broker, monitor-1, architect-1,
#      optimizer-py, director-1, rogue-1) on UNIX sockets, TCTI swtpm:path=<dir>/sock
#   2. each agent's TPM identity key with agentbus-key (--require-tpm)
#   3. agentbus-broker with a config written into the state dir: an ipc endpoint
#      and a loopback TCP one (CurveZMQ; a random free port, retried if taken),
#      policy config/policy.toml plus the demo's operator (a software key made here)
#   4. the operator issues each agent its enrolment bundle (agentbus-trust token
#      create: a one-time token, the broker's fingerprint and transport key; monitor-1
#      connects over TCP with CurveZMQ, the others over ipc), then monitor-1,
#      architect-1, optimizer-py (a Python agent), director-1 (in that order, each
#      waits for the previous one to be subscribed), then rogue-1 (misbehaves on purpose); after it, the rogue
#      tries to enrol as a DIRECTOR it holds no token for, and, once the operator
#      revoked it, with its key under a new name
#   5. a summary: per agent what was DELIVERED (grouped), the rogue's attempts
#      and the broker's typed refusals, and a checklist. Exit 1 if any expected
#      delivery or refusal is missing, or if a rogue envelope was delivered.
#
# With --federated: two brokers, demo-broker (monitor-1, director-1, rogue-1) and
# demo-broker-b (architect-1, optimizer-py), federated over a nats-server with
# JetStream (each broker authenticated by its own NKEY, confined to its subjects):
# the same traffic crosses brokers, the same checklist holds, and the federation view
# (agentbus-trust federation) shows where each agent lives.
#
# Usage: scripts/bus-demo.sh [--keep-running] [--build-dir DIR] [--seconds N]
#                            [--policy FILE] [--verbose] [--federated]
#   --keep-running  leave the broker and the swtpms running afterwards and print
#                   how to point the tools and examples at them
#   --seconds N     how long director-1 runs (default 8)
#   --verbose       also print every agent's full log
# The build dir defaults to $AGENTBUS_BUILD_DIR or build/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

build_dir="${AGENTBUS_BUILD_DIR:-build}"
keep_running=0
director_seconds=8
policy="config/policy.toml"
verbose=0
federated=0
while [ $# -gt 0 ]; do
  case "$1" in
    --federated) federated=1 ;;
    --keep-running) keep_running=1 ;;
    --build-dir) build_dir="$2"; shift ;;
    --seconds) director_seconds="$2"; shift ;;
    --policy) policy="$2"; shift ;;
    --verbose) verbose=1 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bus-demo: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$build_dir" in /*) ;; *) build_dir="$repo/$build_dir" ;; esac
case "$policy" in /*) ;; *) policy="$repo/$policy" ;; esac

key_tool="$build_dir/tools/agentbus-key"
trust_tool="$build_dir/tools/agentbus-trust"
broker_bin="$build_dir/broker/agentbus-broker"
examples_dir="$build_dir/examples"
missing=()
for bin in "$key_tool" "$trust_tool" "$broker_bin" "$examples_dir"/agentbus-example-{monitor,architect,director,rogue}; do
  [ -x "$bin" ] || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bus-demo: not built: ${missing[*]}" >&2
  echo "bus-demo: build first: scripts/build.sh (or cmake --build $build_dir --target agentbus-key agentbus-broker agentbus-example-monitor agentbus-example-architect agentbus-example-director agentbus-example-rogue)" >&2
  exit 2
fi
# Debian's interpreter, for which the module is built (python/CMakeLists.txt).
python="${AGENTBUS_PYTHON:-/usr/bin/python3}"
ls "$build_dir"/python/agentbus/_agentbus*.so >/dev/null 2>&1 ||
  { echo "bus-demo: the Python module is not built ($build_dir/python/agentbus): scripts/build.sh" >&2; exit 2; }
command -v swtpm >/dev/null || { echo "bus-demo: swtpm not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
if [ "$federated" = 1 ]; then
  command -v nats-server >/dev/null || { echo "bus-demo: nats-server not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
fi
[ -f "$policy" ] || { echo "bus-demo: policy $policy not found" >&2; exit 2; }

state="$(mktemp -d "${TMPDIR:-/tmp}/agentbus-bus-demo.XXXXXX")"
mkdir -p "$state/logs" "$state/keys" "$state/tpm" "$state/broker" "$state/bundles"
chmod 700 "$state/bundles"
endpoint="ipc://$state/broker.sock"
admin_endpoint="ipc://$state/admin.sock"
if [ "$keep_running" = 1 ]; then
  # Left running, the demo's broker answers where agentbus-trust looks by default from
  # a build tree ($AGENTBUS_ADMIN, else config/broker.toml's admin endpoint,
  # ipc:///tmp/agentbus/admin.sock), so `agentbus-trust agents`
  # works as it is, unless another broker already answers there.
  default_admin="ipc:///tmp/agentbus/admin.sock"
  if [ -z "${AGENTBUS_ADMIN:-}" ] && ! "$build_dir/tools/agentbus-trust" --admin "$default_admin" --timeout-ms 500 agents >/dev/null 2>&1; then
    mkdir -p /tmp/agentbus
    rm -f /tmp/agentbus/admin.sock
    admin_endpoint="$default_admin"
  fi
fi

declare -A tcti=() swtpm_pid=() agent_pid=() agent_rc=()
broker_pid=""
broker_b_pid=""
nats_pid=""
# Where each agent enrols: demo-broker (a) unless --federated puts it at demo-broker-b.
declare -A broker_of=([monitor-1]=a [architect-1]=a [optimizer-py]=a [director-1]=a [rogue-1]=a)
if [ "$federated" = 1 ]; then broker_of[architect-1]=b; broker_of[optimizer-py]=b; fi
admin_b="ipc://$state/admin-b.sock"
endpoint_b="ipc://$state/broker-b.sock"
leave_running=0

# stop_pid sends SIGTERM, waits up to $2 seconds, then SIGKILL. Only PIDs we started.
stop_pid() {
  local pid="$1" wait_s="${2:-5}" i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked through trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for name in "${!agent_pid[@]}"; do stop_pid "${agent_pid[$name]}" 5; done
  if [ "$leave_running" = 1 ]; then
    exit "$rc"
  fi
  stop_pid "$broker_pid" 10
  stop_pid "$broker_b_pid" 10
  stop_pid "$nats_pid" 5
  for id in "${!swtpm_pid[@]}"; do stop_pid "${swtpm_pid[$id]}" 5; done
  rm -rf "$state"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "bus-demo: interrupted" >&2; exit 130' INT
trap 'echo "bus-demo: terminated" >&2; exit 143' TERM

die() {
  echo "bus-demo: $*" >&2
  exit 1
}

show_log() {  # show_log FILE [LINES]
  [ -s "$1" ] || return 0
  echo "---- $1 (last ${2:-25} lines)" >&2
  tail -n "${2:-25}" "$1" | sed 's/^/    /' >&2
}

# start_swtpm ID: a private swtpm on UNIX sockets in $state/tpm/ID.
start_swtpm() {
  local id="$1" d="$state/tpm/$1" i
  mkdir -p "$d"
  if [ "$id" != broker ]; then
    # Provisioned as a manufacturer would: an EK and its certificate from the demo's
    # CA (swtpm_setup --create-ek-cert with swtpm-localca), so the agents' keys are
    # attested, not declared.
    mkdir -p "$state/ek-ca"
    printf 'statedir = %s\nsigningkey = %s\nissuercert = %s\ncertserial = %s\n' "$state/ek-ca" \
      "$state/ek-ca/signkey.pem" "$state/ek-ca/issuercert.pem" "$state/ek-ca/certserial" >"$d/localca.conf"
    printf 'create_certs_tool = /usr/share/swtpm/swtpm-localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n' \
      "$d/localca.conf" >"$d/setup.conf"
    swtpm_setup --tpm2 --tpmstate "$d" --create-ek-cert --config "$d/setup.conf" --overwrite >"$d/setup.log" 2>&1 ||
      { show_log "$d/setup.log"; die "swtpm_setup for $id failed"; }
  fi
  swtpm socket --tpm2 --tpmstate dir="$d" \
    --server type=unixio,path="$d/sock" --ctrl type=unixio,path="$d/sock.ctrl" \
    --flags not-need-init,startup-clear --daemon --pid file="$d/pid" \
    --log file="$d/swtpm.log",level=1 ||
    { show_log "$d/swtpm.log"; die "swtpm for $id did not start"; }
  for ((i = 0; i < 200; i++)); do
    [ -s "$d/pid" ] && [ -S "$d/sock" ] && [ -S "$d/sock.ctrl" ] && break
    sleep 0.05
  done
  if ! [ -s "$d/pid" ] || ! [ -S "$d/sock" ]; then show_log "$d/swtpm.log"; die "swtpm for $id did not create its sockets"; fi
  swtpm_pid[$id]="$(cat "$d/pid")"
  tcti[$id]="swtpm:path=$d/sock"
}

# wait_for_line NAME PATTERN: until the agent's log has PATTERN, or it exited.
wait_for_line() {
  local name="$1" pattern="$2" i
  for ((i = 0; i < 600; i++)); do
    grep -qE "$pattern" "$state/logs/$name.log" 2>/dev/null && return 0
    if ! kill -0 "${agent_pid[$name]}" 2>/dev/null; then
      show_log "$state/logs/$name.log"; show_log "$state/logs/$name.err"; show_log "$state/logs/broker.log"
      die "$name exited before printing '$pattern'"
    fi
    sleep 0.05
  done
  show_log "$state/logs/$name.log"; show_log "$state/logs/$name.err"; show_log "$state/logs/broker.log"
  die "$name did not print '$pattern' within 30 s"
}

# start_agent KIND NAME ROLE [extra options...]
start_agent() {
  local kind="$1" name="$2" role="$3"
  shift 3
  "$examples_dir/agentbus-example-$kind" --name "$name" --role "$role" --key-dir "$state/keys/$name" \
    --tcti "${tcti[$name]}" --enrolment-bundle "$state/bundles/$name.toml" --policy "$demo_policy" --log-level info "$@" \
    >"$state/logs/$name.log" 2>"$state/logs/$name.err" &
  agent_pid[$name]=$!
}

# issue_bundle NAME ROLE [bind [ENDPOINT]]: the operator issues NAME's enrolment bundle
# (a one-time token; with "bind", only for the key agentbus-key created for NAME),
# naming ENDPOINT (default: the ipc endpoint) as the broker's.
issue_bundle() {
  local name="$1" role="$2" bind=() at="${4:-$endpoint}" admin="$admin_endpoint"
  if [ "${3:-}" = bind ]; then
    bind=(--fingerprint "$(awk '/^fingerprint/ {sub(/^sha256:/, "", $2); print $2}' "$state/logs/key-$name.txt")")
  fi
  if [ "${broker_of[$name]:-a}" = b ]; then admin="$admin_b"; at="$endpoint_b"; fi
  "$trust_tool" --admin "$admin" token create "$name" --role "$role" "${bind[@]}" --endpoint "$at" --ttl 600 \
    --out "$state/bundles/$name.toml" --operator-key "$state/keys/operator" --operator demo-operator \
    >>"$state/logs/operator.log" 2>&1 || { show_log "$state/logs/operator.log"; die "token create for $name failed"; }
}

# wait_agent NAME: wait for it to exit and record its exit code.
wait_agent() {
  local rc=0
  wait "${agent_pid[$1]}" || rc=$?
  agent_rc[$1]=$rc
  unset "agent_pid[$1]"
}

agents=(broker monitor-1 architect-1 optimizer-py director-1 rogue-1)
[ "$federated" = 1 ] && agents=(broker broker-b monitor-1 architect-1 optimizer-py director-1 rogue-1)
declare -A role_of=([monitor-1]=MONITOR [architect-1]=ARCHITECT [optimizer-py]=OPTIMIZER [director-1]=DIRECTOR [rogue-1]=MONITOR)

echo "== agentbus bus demo: state in $state"
echo "-- starting one swtpm per identity"
for id in "${agents[@]}"; do
  start_swtpm "$id"
  printf '   %-12s swtpm pid %-7s %s\n' "$id" "${swtpm_pid[$id]}" "${tcti[$id]}"
done

echo "-- creating TPM identity keys (agentbus-key create --require-tpm)"
for name in monitor-1 architect-1 optimizer-py director-1 rogue-1; do
  "$key_tool" --policy "$policy" create --role "${role_of[$name]}" --dir "$state/keys/$name" \
    --tcti "${tcti[$name]}" --require-tpm >"$state/logs/key-$name.txt" 2>&1 ||
    { show_log "$state/logs/key-$name.txt"; die "agentbus-key create for $name failed"; }
  printf '   %-12s %-12s %s  fingerprint %s\n' "$name" "${role_of[$name]}" \
    "$(awk '/^suite/ {print $2}' "$state/logs/key-$name.txt")" \
    "$(awk '/^fingerprint/ {print substr($2, 8, 16)}' "$state/logs/key-$name.txt")"
done

echo "-- the demo's operator key (software: it signs admin requests, never envelopes)"
"$key_tool" --policy "$policy" create --role DEBUGGER --dir "$state/keys/operator" --software \
  >"$state/logs/key-operator.txt" 2>&1 || { show_log "$state/logs/key-operator.txt"; die "the operator key could not be made"; }
operator_fp="$(awk '/^fingerprint/ {sub(/^sha256:/, "", $2); print $2}' "$state/logs/key-operator.txt")"
demo_policy="$state/policy.toml"
# The demo's policy: the shipped one, plus its operator, its EK CA, and attestation
# required of every TPM role (DEBUGGER, which may use software keys, excepted).
{
  sed -e 's/^require_attestation = false$/require_attestation = true/' \
      -e 's/^\[roles.DEBUGGER\]$/[roles.DEBUGGER]\nrequire_attestation = false/' "$policy"
  printf '\n# added by scripts/bus-demo.sh\n[operators.demo-operator]\nfingerprint = "%s"\n' "$operator_fp"
  printf '\n[attestation.ek_ca.demo-ca]\nroot = "%s"\nintermediates = ["%s"]\nsimulator = true\n' \
    "$state/ek-ca/swtpm-localca-rootca-cert.pem" "$state/ek-ca/issuercert.pem"
} >"$demo_policy"
grep -q '^require_attestation = true$' "$demo_policy" || die "the policy $policy has no [defaults] require_attestation line to turn on"
echo "   demo-operator fingerprint ${operator_fp:0:16}, policy $demo_policy (EK CA $state/ek-ca, attestation required)"

# --federated: the NATS server both brokers use (JetStream for the directory), each
# broker with its own NKEY and only its own subjects (docs/federation.md), and the
# brokers' identities made first: each configuration names both fingerprints.
federation_section() { :; }
if [ "$federated" = 1 ]; then
  echo "-- federation: two brokers' identities, their NKEYs, a nats-server with JetStream"
  mkdir -p "$state/nats" "$state/broker-b"
  broker_fp=()
  nkey=()
  for b in a b; do
    d="$state/broker"; t="${tcti[broker]}"
    if [ "$b" = b ]; then d="$state/broker-b"; t="${tcti[broker-b]}"; fi
    printf '[broker]\nname = "x"\nendpoints = ["ipc://%s/id.sock"]\npolicy = "%s"\nstate_dir = "%s"\n[identity]\nkey_dir = "%s/key"\ntcti = "%s"\nsuite = "ecdsa-p256-sha256"\n' \
      "$d" "$demo_policy" "$d" "$d" "$t" >"$d/identity.toml"
    fp="$("$broker_bin" --config "$d/identity.toml" --print-identity 2>>"$state/logs/identity-$b.log")" ||
      { show_log "$state/logs/identity-$b.log"; die "the identity of broker $b could not be made"; }
    broker_fp+=("$fp")
    nk="$("$trust_tool" nkey --out "$d/nats.nk")" || die "agentbus-trust nkey failed"
    nkey+=("$nk")
  done
  nats_port=$((20000 + RANDOM % 40000))
  perms() {  # perms BROKER: what that broker may publish and subscribe to
    printf '{ publish: { allow: ["agentbus.b.*.a.%s.>", "agentbus.b.*.t.%s.>", "agentbus.b.*.n.%s", "agentbus.b.*.r.%s", "$KV.agentbus_directory.>", "$JS.API.STREAM.INFO.KV_agentbus_directory", "$JS.API.STREAM.CREATE.KV_agentbus_directory", "$JS.API.STREAM.MSG.GET.KV_agentbus_directory", "$JS.API.DIRECT.GET.KV_agentbus_directory.>", "$JS.API.CONSUMER.CREATE.KV_agentbus_directory", "$JS.API.CONSUMER.CREATE.KV_agentbus_directory.>", "$JS.API.CONSUMER.DELETE.KV_agentbus_directory.>", "$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.FC.>"] }, subscribe: { allow: ["agentbus.b.%s.>", "_INBOX.>"] } }' "$1" "$1" "$1" "$1" "$1"
  }
  {
    echo "listen: 127.0.0.1:$nats_port"
    echo "jetstream { store_dir: \"$state/nats/js\", max_memory_store: 64MB, max_file_store: 256MB }"
    echo "authorization {"
    echo "  users: ["
    echo "    { nkey: ${nkey[0]}, permissions: $(perms demo-broker) },"
    echo "    { nkey: ${nkey[1]}, permissions: $(perms demo-broker-b) }"
    echo "  ]"
    echo "}"
  } >"$state/nats/nats.conf"
  nats-server -c "$state/nats/nats.conf" >"$state/logs/nats.log" 2>&1 &
  nats_pid=$!
  echo "   nats-server pid $nats_pid on 127.0.0.1:$nats_port (JetStream; brokers authenticated by NKEY: ${nkey[0]:0:12}..., ${nkey[1]:0:12}...)"
  echo "   demo-broker fingerprint ${broker_fp[0]:0:16}, demo-broker-b fingerprint ${broker_fp[1]:0:16}"
  federation_section() {  # federation_section SEED_FILE
    printf '\n[federation]\nservers = ["nats://127.0.0.1:%s"]\nnkey_seed_file = "%s"\nreplicas = 1\n\n[federation.brokers]\ndemo-broker = "%s"\ndemo-broker-b = "%s"\n' \
      "$nats_port" "$1" "${broker_fp[0]}" "${broker_fp[1]}"
  }
fi

# The TCP endpoint takes a random port; a broker that cannot bind it exits, and the
# demo tries another.
for ((attempt = 0; attempt < 5; attempt++)); do
tcp_endpoint="tcp://127.0.0.1:$((20000 + RANDOM % 40000))"
echo "-- starting agentbus-broker on $endpoint and $tcp_endpoint (CurveZMQ)"
cat >"$state/broker.toml" <<EOF
# written by scripts/bus-demo.sh
[broker]
name = "demo-broker"
endpoints = ["$endpoint", "$tcp_endpoint"]
policy = "$demo_policy"
state_dir = "$state/broker"
admin_endpoint = "$admin_endpoint"

[identity]
key_dir = "$state/broker/key"
tcti = "${tcti[broker]}"
allow_software = false
suite = "ecdsa-p256-sha256"

[limits]
max_frame_bytes = 1114112
send_hwm = 10000
recv_hwm = 10000
max_clock_skew_ms = 30000
max_agents = 10000
max_subscriptions_per_agent = 256

[sessions]
rekey_after_messages = 1000000
rekey_after_seconds = 3600
rekey_grace_seconds = 30

[logging]
format = "text"
level = "info"
EOF
federation_section "$state/broker/nats.nk" >>"$state/broker.toml"
rm -f "$state/broker.sock"
"$broker_bin" --config "$state/broker.toml" >"$state/logs/broker.log" 2>&1 &
broker_pid=$!
# Ready when its admin endpoint names it (it answers only once every endpoint is bound).
broker_line=""
for ((i = 0; i < 1200; i++)); do
  kill -0 "$broker_pid" 2>/dev/null || break
  if [ -S "$state/broker.sock" ]; then
    broker_line="$("$trust_tool" --admin "$admin_endpoint" --timeout-ms 500 broker 2>/dev/null | head -n 1)" || broker_line=""
    [ -n "$broker_line" ] && break
  fi
  sleep 0.05
done
[ -n "$broker_line" ] && break
kill "$broker_pid" 2>/dev/null || true
wait "$broker_pid" 2>/dev/null || true
grep -q "Address already in use" "$state/logs/broker.log" || { show_log "$state/logs/broker.log" 40; die "the broker did not start (or its admin endpoint did not answer) within 60 s"; }
echo "   $tcp_endpoint is taken; another port"
done
[ -n "$broker_line" ] || { show_log "$state/logs/broker.log" 40; die "no free TCP port for the broker after 5 attempts"; }
echo "   broker pid $broker_pid, identity ${broker_line#* }, log $state/logs/broker.log"
if [ "$federated" = 1 ]; then
  echo "-- starting demo-broker-b on $endpoint_b (federated with demo-broker)"
  sed -e "s|^name = \"demo-broker\"|name = \"demo-broker-b\"|" -e "s|^endpoints = .*|endpoints = [\"$endpoint_b\"]|" \
      -e "s|^state_dir = .*|state_dir = \"$state/broker-b\"|" -e "s|^admin_endpoint = .*|admin_endpoint = \"$admin_b\"|" \
      -e "s|^key_dir = .*|key_dir = \"$state/broker-b/key\"|" -e "s|^tcti = .*|tcti = \"${tcti[broker-b]}\"|" \
      -e "s|^nkey_seed_file = .*|nkey_seed_file = \"$state/broker-b/nats.nk\"|" "$state/broker.toml" >"$state/broker-b.toml"
  "$broker_bin" --config "$state/broker-b.toml" >"$state/logs/broker-b.log" 2>&1 &
  broker_b_pid=$!
  joined=0
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$broker_b_pid" 2>/dev/null || { show_log "$state/logs/broker-b.log" 40; die "demo-broker-b exited"; }
    if "$trust_tool" --admin "$admin_endpoint" --timeout-ms 500 federation 2>/dev/null | grep -qE '^demo-broker-b +yes'; then
      joined=1
      break
    fi
    sleep 0.05
  done
  [ "$joined" = 1 ] || { show_log "$state/logs/broker-b.log" 40; die "demo-broker-b did not join the federation within 60 s"; }
  echo "   demo-broker-b pid $broker_b_pid, log $state/logs/broker-b.log; both brokers see each other live"
fi

echo "-- operation profiles: what each role runs with (agentbus-trust profiles)"
"$trust_tool" --admin "$admin_endpoint" profiles 2>&1 | sed 's/^/   /'

echo "-- the operator issues enrolment bundles (agentbus-trust token create: token, broker fingerprint and transport key)"
for name in monitor-1 architect-1 optimizer-py director-1 rogue-1; do
  if [ "$name" = monitor-1 ]; then
    issue_bundle "$name" "${role_of[$name]}" bind "$tcp_endpoint"
    echo "   $name: $state/bundles/$name.toml (token bound to its key; connects to $tcp_endpoint with CurveZMQ)"
  else
    issue_bundle "$name" "${role_of[$name]}" bind
    echo "   $name: $state/bundles/$name.toml (token bound to its key)"
  fi
done

echo "-- starting agents"
# The monitor signs in tpm-batch mode (one TPM signature per Merkle batch), the others
# envelope by envelope: the demo's traffic mixes both assurance levels.
start_agent monitor monitor-1 MONITOR --batch
wait_for_line monitor-1 '^\[monitor-1\] (SUBSCRIBED directives/all|FAILED subscribe)'
echo "   monitor-1    pid ${agent_pid[monitor-1]}"
start_agent architect architect-1 ARCHITECT
wait_for_line architect-1 '^\[architect-1\] (SUBSCRIBED metrics/cpu|FAILED subscribe metrics)'
echo "   architect-1  pid ${agent_pid[architect-1]}"
# The optimizer is a Python agent (examples/python/optimizer.py, import agentbus).
PYTHONPATH="$build_dir/python${PYTHONPATH:+:$PYTHONPATH}" "$python" "$repo/examples/python/optimizer.py" \
  --name optimizer-py --key-dir "$state/keys/optimizer-py" --tcti "${tcti[optimizer-py]}" \
  --enrolment-bundle "$state/bundles/optimizer-py.toml" --policy "$demo_policy" \
  >"$state/logs/optimizer-py.log" 2>"$state/logs/optimizer-py.err" &
agent_pid[optimizer-py]=$!
wait_for_line optimizer-py '^\[optimizer-py\] (SUBSCRIBED metrics/cpu|FAILED subscribe metrics)'
echo "   optimizer-py pid ${agent_pid[optimizer-py]} (Python)"
start_agent director director-1 DIRECTOR --seconds "$director_seconds" --optimizer optimizer-py
wait_for_line director-1 '^\[director-1\] (SUBSCRIBED design/updates|FAILED subscribe design)'
echo "   director-1   pid ${agent_pid[director-1]} (runs ${director_seconds} s)"
start_agent rogue rogue-1 MONITOR --timeout 25
echo "   rogue-1      pid ${agent_pid[rogue-1]} (misbehaves on purpose)"

wait_agent director-1
wait_agent rogue-1
if [ "$federated" = 1 ]; then
  echo "-- the federation while the agents run (agentbus-trust federation, asked of demo-broker)"
  "$trust_tool" --admin "$admin_endpoint" federation 2>&1 | sed 's/^/   /'
fi

# Enrolment the rogue has no right to. (b) A DIRECTOR name it holds no token for, with
# a fresh TPM key of its own; (c) once the operator revoked rogue-1 (name and key), its
# key under a new name, even with a valid token for that name.
echo "-- rogue enrolment attempts"
# (a) A software key declared as a hardware TPM key, for a DIRECTOR name it holds a
# valid token for: the role requires attestation, and the key has no evidence.
issue_bundle director-8 DIRECTOR
"$examples_dir/agentbus-example-rogue" --name director-8 --role DIRECTOR --key-dir "$state/keys/rogue-soft" --software \
  --claim-tpm --enrolment-bundle "$state/bundles/director-8.toml" --policy "$policy" \
  >"$state/logs/rogue-enrol-a.log" 2>"$state/logs/rogue-enrol-a.err" || true
"$key_tool" --policy "$policy" create --role DIRECTOR --dir "$state/keys/rogue-director" --tcti "${tcti[rogue-1]}" \
  --require-tpm >"$state/logs/key-rogue-director.txt" 2>&1 || { show_log "$state/logs/key-rogue-director.txt"; die "agentbus-key create for the rogue's DIRECTOR key failed"; }
"$examples_dir/agentbus-example-rogue" --name director-9 --role DIRECTOR --key-dir "$state/keys/rogue-director" \
  --tcti "${tcti[rogue-1]}" --broker "$endpoint" --broker-fingerprint "${broker_line#* }" --policy "$policy" \
  >"$state/logs/rogue-enrol-b.log" 2>"$state/logs/rogue-enrol-b.err" || true
"$trust_tool" --admin "$admin_endpoint" revoke rogue-1 --reason "misbehaved in the demo" \
  --operator-key "$state/keys/operator" --operator demo-operator >>"$state/logs/operator.log" 2>&1 ||
  { show_log "$state/logs/operator.log"; die "revoke rogue-1 failed"; }
issue_bundle mon-victim-2 MONITOR
"$examples_dir/agentbus-example-rogue" --name mon-victim-2 --role MONITOR --key-dir "$state/keys/rogue-1" \
  --tcti "${tcti[rogue-1]}" --enrolment-bundle "$state/bundles/mon-victim-2.toml" --policy "$policy" \
  >"$state/logs/rogue-enrol-c.log" 2>"$state/logs/rogue-enrol-c.err" || true
# The monitor and the architect run until told to stop.
for name in monitor-1 architect-1 optimizer-py; do
  stop_pid "${agent_pid[$name]}" 10
  wait_agent "$name"
done

# ---------------------------------------------------------------- summary
log() { cat "$state/logs/$1.log" 2>/dev/null || true; }  # (pipelines below read all of it: no SIGPIPE)

# grouped NAME: the agent's DELIVERED/REQUEST/REPLY lines, grouped by verb,
# origin and channel, with a count and the first payload.
grouped() {
  log "$1" | sed -nE 's/^\[[^]]+\] (DELIVERED|REQUEST|REPLY) (from [^:]+): (topic [^:]+|direct): (.*)$/\1 \2: \3\t\4/p' |
    awk -F'\t' '{ if (!($1 in n)) { order[++k] = $1; first[$1] = $2 } n[$1]++ }
                END { for (i = 1; i <= k; i++) { p = first[order[i]]; if (length(p) > 90) p = substr(p, 1, 90) "...";
                      printf "   %4dx %s\n          e.g. %s\n", n[order[i]], order[i], p } }'
}

echo
echo "================================ summary ================================"
for name in director-1 monitor-1 architect-1 optimizer-py; do
  echo "-- $name (${role_of[$name]}$([ "$name" = optimizer-py ] && echo ', Python'))   exit ${agent_rc[$name]:-?}"
  grouped "$name"
  log "$name" | grep -E '^\[[^]]+\] (REFUSED|REJECTED|FAILED|SETUP FAILED)' | sed 's/^/   /' || true
  log "$name" | grep -E '^\[[^]]+\] (STATS|SUMMARY)' | sed 's/^/   /' || true
done
echo "-- rogue-1 (MONITOR, misbehaving)   exit ${agent_rc[rogue-1]:-?}"
log rogue-1 | grep -E '^\[rogue-1\] (ATTEMPT|SENT valid|REFUSED|RESULT|UNATTRIBUTED|NOTE|SUMMARY|PROBLEM|FAILED|SETUP FAILED)' |
  sed 's/^/   /' || true
echo "   ENROL a: as director-8 (DIRECTOR) with a software key claiming to be a TPM key (and a valid token):"
log rogue-enrol-a | grep -E 'REFUSED|READY|FAILED' | sed 's/^/     /' || true
echo "   ENROL b: as director-9 (DIRECTOR) with a fresh TPM key and no token:"
log rogue-enrol-b | grep -E 'REFUSED|READY|FAILED' | sed 's/^/     /' || true
echo "   ENROL c: rogue-1's key (revoked with rogue-1) as mon-victim-2, with a valid token for that name:"
log rogue-enrol-c | grep -E 'REFUSED|READY|FAILED' | sed 's/^/     /' || true

echo
echo "-- checklist"
failed=0
check() {  # check DESCRIPTION AGENT PATTERN
  if grep -qE "$3" "$state/logs/$2.log" 2>/dev/null; then
    printf '   ok       %s\n' "$1"
  else
    printf '   MISSING  %s\n' "$1"
    failed=1
  fi
}
tpm='tpm[a-z-]*'  # tpm or tpm-batch
check "director-1 got metrics/cpu from monitor-1 (MONITOR, ecdsa-p256-sha256)" director-1 \
  "DELIVERED from monitor-1 \(MONITOR, ecdsa-p256-sha256, $tpm\): topic metrics/cpu:"
check "director-1 got design/updates from architect-1 (ARCHITECT, ecdsa-p384-sha3-384)" director-1 \
  "DELIVERED from architect-1 \(ARCHITECT, ecdsa-p384-sha3-384, $tpm\): topic design/updates:"
check "director-1 got monitor-1's direct answer" director-1 \
  "DELIVERED from monitor-1 \(MONITOR, ecdsa-p256-sha256, $tpm\): direct:"
check "director-1 got the reply to its request from architect-1" director-1 \
  "REPLY from architect-1 \(ARCHITECT, ecdsa-p384-sha3-384, $tpm\)"
check "monitor-1 got the directive from director-1 (DIRECTOR, rsa3072-pss-sha384)" monitor-1 \
  "DELIVERED from director-1 \(DIRECTOR, rsa3072-pss-sha384, $tpm\): topic directives/all:"
check "monitor-1 got director-1's direct message" monitor-1 \
  "DELIVERED from director-1 \(DIRECTOR, rsa3072-pss-sha384, $tpm\): direct:"
check "architect-1 got the directive from director-1" architect-1 \
  "DELIVERED from director-1 \(DIRECTOR, rsa3072-pss-sha384, $tpm\): topic directives/all:"
check "architect-1 got metrics/cpu from monitor-1" architect-1 \
  "DELIVERED from monitor-1 \(MONITOR, ecdsa-p256-sha256, $tpm\): topic metrics/cpu:"
check "architect-1 answered director-1's request" architect-1 \
  "REQUEST from director-1 \(DIRECTOR, rsa3072-pss-sha384, $tpm\)"
check "optimizer-py (Python) got metrics/cpu from monitor-1" optimizer-py \
  "DELIVERED from monitor-1 \(MONITOR, ecdsa-p256-sha256, $tpm\): topic metrics/cpu:"
check "optimizer-py (Python) answered director-1's request" optimizer-py \
  "REQUEST from director-1 \(DIRECTOR, rsa3072-pss-sha384, $tpm\)"
check "director-1 got the plan from optimizer-py (OPTIMIZER, ecdsa-p256-sha256)" director-1 \
  "REPLY from optimizer-py \(OPTIMIZER, ecdsa-p256-sha256, $tpm\)"
check "optimizer-py's subscription outside its ACL refused as agentbus.AclDenied" optimizer-py \
  "REFUSED subscribe debug/trace: acl_denied"
for attempt in "a wrong-suite" "b replay" "c tampered" "d spoofed-sender" "e acl-topic" "e2 acl-agent" "f garbage"; do
  read -r attempt_id attempt_label <<<"$attempt"
  check "rogue-1 attempt $attempt_id ($attempt_label) refused by the broker with the expected reason" rogue-1 \
    "^\[rogue-1\] RESULT $attempt_id $attempt_label: refused as [a-z_]+ \(expected\)"
done
check "rogue enrolment a (a software key claiming a TPM) refused not_attested" rogue-enrol-a \
  "REFUSED by broker at enrolment: .*not_attested"
check "rogue enrolment b (a DIRECTOR name without a token) refused not_authorised" rogue-enrol-b \
  "REFUSED by broker at enrolment: .*not_authorised"
check "rogue enrolment c (a revoked key under a new name) refused revoked_key" rogue-enrol-c \
  "REFUSED by broker at enrolment: .*revoked_key"
for name in director-1 monitor-1 architect-1 optimizer-py; do
  at="$admin_endpoint"
  if [ "${broker_of[$name]}" = b ]; then at="$admin_b"; fi
  # The attestation the broker recorded, read from its registry (not the agent's word).
  attestation=$("$trust_tool" --admin "$at" show "$name" --json 2>/dev/null | "$python" -c '
import json, sys
t = (json.load(sys.stdin).get("agent") or {}).get("attestation") or {}
if t.get("ek_ca") == "demo-ca":
    print("EK CA %s (issuer %s), EK sha256:%s..., AK %s... certified its keys (fixedTPM, fixedParent, "
          "sensitiveDataOrigin)" % (t["ek_ca"], t["ek_issuer"], t["ek_fingerprint"][:16], t["ak_name"][:20]))' 2>/dev/null)
  if [ -n "$attestation" ]; then
    printf '   ok       %s is attested: %s\n' "$name" "$attestation"
  else
    printf '   MISSING  %s is not attested\n' "$name"
    failed=1
  fi
done
# Receivers require the roles attested too (the demo policy): each made its own
# credential for its peers' AKs when it set a session up, and the peers' TPMs opened it.
proofs=$( { grep -h "TPM recovered our credential" "$state"/logs/*.log "$state"/logs/*.err 2>/dev/null || true; } |
  sed -E 's/.*\[([^]]+)\] ([^ ]+)'"'"'s TPM recovered.*/\2→\1/' | sort -u)
if [ -n "$proofs" ]; then
  printf '   ok       receivers proved their peers'"'"' AKs with credentials of their own (peer→receiver): %s\n' "$(echo $proofs)"
else
  printf '   MISSING  no receiver proved a peer'"'"'s AK with its own credential\n'
  failed=1
fi
for name in director-8 director-9 mon-victim-2; do
  if "$trust_tool" --admin "$admin_endpoint" show "$name" >/dev/null 2>&1; then
    printf '   FAILED   the registry holds a row for %s\n' "$name"
    failed=1
  else
    printf '   ok       the registry holds no row for %s\n' "$name"
  fi
done
if grep -h -E '\] (DELIVERED|REQUEST|REPLY) ' "$state"/logs/*.log | grep 'ROGUE-ATTEMPT' >/dev/null; then
  printf '   FAILED   a rogue envelope was DELIVERED:\n'
  grep -h -E '\] (DELIVERED|REQUEST|REPLY) ' "$state"/logs/*.log | grep 'ROGUE-ATTEMPT' | sed 's/^/            /'
  failed=1
else
  printf '   ok       no rogue envelope was delivered to any agent\n'
fi
for name in director-1 monitor-1 architect-1 optimizer-py rogue-1; do
  if [ "${agent_rc[$name]:-1}" != 0 ]; then
    printf '   FAILED   %s exited %s\n' "$name" "${agent_rc[$name]:-?}"
    failed=1
  fi
done
if ! kill -0 "$broker_pid" 2>/dev/null; then
  printf '   FAILED   the broker is no longer running\n'
  failed=1
fi
if [ "$federated" = 1 ]; then
  if ! kill -0 "$broker_b_pid" 2>/dev/null; then
    printf '   FAILED   demo-broker-b is no longer running\n'
    failed=1
  fi
  # What crossed: the architect and the optimizer live at demo-broker-b.
  if grep -qE "DELIVERED from monitor-1 .*topic metrics/cpu" "$state/logs/architect-1.log" &&
     grep -qE "REPLY from optimizer-py" "$state/logs/director-1.log"; then
    printf '   ok       traffic crossed the federation both ways (demo-broker <-> NATS <-> demo-broker-b)\n'
  else
    printf '   MISSING  traffic across the federation\n'
    failed=1
  fi
fi

if [ "$verbose" = 1 ] || [ "$failed" = 1 ]; then
  echo
  echo "-- logs"
  for name in director-1 monitor-1 architect-1 optimizer-py rogue-1; do
    if [ "$verbose" = 1 ]; then
      echo "---- $state/logs/$name.log"; sed 's/^/    /' "$state/logs/$name.log"
    fi
    show_log "$state/logs/$name.err" 15 2>&1
  done
  show_log "$state/logs/broker.log" 30 2>&1
  if [ "$federated" = 1 ]; then show_log "$state/logs/broker-b.log" 30 2>&1; fi
fi


# The trust graph, from the live broker's registry: who trusts whom, on what
# hardware, and what was refused. The PNG goes next to where the demo was started.
png_out="${AGENTBUS_TRUST_PNG:-$PWD/trust-graph.png}"
echo
echo "-- trust graph (agentbus-trust --admin $admin_endpoint graph)"
sleep 1.2  # the broker flushes its counters to the registry once a second
if "$trust_tool" --admin "$admin_endpoint" --policy "$policy" graph 2>&1 | sed 's/^/   /'; then
  if "$trust_tool" --admin "$admin_endpoint" --policy "$policy" graph --png "$png_out" >/dev/null 2>&1; then
    echo "   graph drawn to $png_out"
  else
    echo "   FAILED   could not render the trust graph PNG"
    failed=1
  fi
else
  echo "   FAILED   agentbus-trust could not read the broker's trust graph"
  failed=1
fi

echo
if [ "$failed" = 0 ]; then
  echo "bus demo: OK — every expected delivery arrived and every rogue attempt was refused with its typed reason"
else
  echo "bus demo: FAILED — see MISSING / FAILED above"
fi

if [ "$keep_running" = 1 ]; then
  leave_running=1
  {
    echo "#!/usr/bin/env bash"
    echo "# stops what scripts/bus-demo.sh --keep-running left running (by PID) and removes its state"
    echo "kill ${broker_pid} ${swtpm_pid[*]} 2>/dev/null; sleep 1; rm -rf '$state'"
    if [ "$admin_endpoint" = "ipc:///tmp/agentbus/admin.sock" ]; then echo "rm -f /tmp/agentbus/admin.sock"; fi
  } >"$state/stop.sh"
  chmod +x "$state/stop.sh"
  cat <<EOF

The broker and the swtpms are still running (state: $state):
  broker   pid $broker_pid   endpoint $endpoint   admin $admin_endpoint
           config $state/broker.toml   log $state/logs/broker.log
EOF
  for id in "${agents[@]}"; do
    printf '  swtpm    %-12s pid %-7s --tcti %s\n' "$id" "${swtpm_pid[$id]}" "${tcti[$id]}"
  done
  cat <<EOF
Point the tools at them, e.g.:
  $trust_tool --admin $admin_endpoint agents
  $trust_tool --admin $admin_endpoint graph --png trust.png
  $trust_tool --db $state/broker/registry.db edges      (offline, read-only)
  $key_tool info --tcti ${tcti[monitor-1]}
  $key_tool pubkey --dir $state/keys/monitor-1
  $trust_tool --admin $admin_endpoint token create monitor-2 --role MONITOR --endpoint $endpoint \\
      --out monitor-2.toml --operator-key $state/keys/operator --operator demo-operator
  $examples_dir/agentbus-example-monitor --name monitor-2 --role MONITOR --key-dir $state/keys/monitor-2 \\
      --tcti ${tcti[monitor-1]} --enrolment-bundle monitor-2.toml --policy $policy --seconds 5
Stop everything: $state/stop.sh
EOF
fi
exit "$failed"
