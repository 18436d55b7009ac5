"""A federation under attack and under failure (issue 15): a broker that tampers with
what it forwards is caught by the receiving broker, and by the receiving library when
that broker is told to let everything through; a broker killed (SIGKILL) and
restarted, a NATS node killed, a partition between two NATS nodes: each time every
envelope sent is delivered or its sender is told, and traffic resumes.
docs/federation.md §6 states these outcomes."""

from __future__ import annotations

import gc
import time
from typing import Iterator

import pytest

import agentbus
from federation_harness import FederatedBus
from harness import REPO, stop_process, wait_for


def agents_on(fed: FederatedBus, tpm: "agentbus.Tpm", made: list):
    def make(name: str, role: str, broker: str, **kwargs):
        key = agentbus.open_or_create_identity(fed.key_dir(name), role, tpm=tpm)
        a = agentbus.Agent(identity=key, bundle=fed.bundle(name, role, broker), **kwargs)
        made.append(a)
        return a
    return make


def reachable(fed: FederatedBus, broker: str, agent: str) -> bool:
    a = fed.where(broker, agent)
    return a is not None and a["reachable"]


# ---- a broker gone bad ----

@pytest.fixture(scope="module")
def bad() -> Iterator[FederatedBus]:
    f = FederatedBus({"tamper": {"args": ["--insecure-tamper-federation"]}, "strict": {},
                      "lax": {"args": ["--insecure-permissive-testing"]}})
    yield f
    gc.collect()
    f.close()


def test_a_tampering_broker_is_caught_by_the_receiving_broker_and_the_receiver(bad):
    tpm = agentbus.Tpm(bad.agent_tpm.tcti)
    made: list = []
    try:
        make = agents_on(bad, tpm, made)
        sender = make("bad-sender", "DIRECTOR", "tamper")
        at_strict = make("bad-to-strict", "MONITOR", "strict")
        at_lax = make("bad-to-lax", "MONITOR", "lax")
        refused_at_sender, refused_at_receiver, got = [], [], []
        sender.on_rejected(refused_at_sender.append)
        at_lax.on_rejected(refused_at_receiver.append)
        at_strict.on_message(got.append)
        at_lax.on_message(got.append)
        wait_for(lambda: reachable(bad, "tamper", "bad-to-strict") and reachable(bad, "tamper", "bad-to-lax")
                 and reachable(bad, "strict", "bad-sender") and reachable(bad, "lax", "bad-sender"), 20,
                 "the federation to know everyone")

        # The strict broker checks the signature itself: the session offer the bad
        # broker changed is refused there and the refusal reaches the sender.
        with pytest.raises((agentbus.BadSignature, agentbus.NoSession, agentbus.Timeout)):
            sender.request("bad-to-strict", b"orders", timeout=10)
        wait_for(lambda: any(r.code_name == "bad_signature" and r.recipient == "bad-to-strict"
                             for r in refused_at_sender), 20, "the strict broker's refusal at the sender")
        assert any("bad_signature" in line and "bad-sender" in line for line in bad.log("strict").splitlines())

        # The lax broker lets it through; the receiving library refuses it.
        with pytest.raises((agentbus.BadSignature, agentbus.NoSession, agentbus.Timeout)):
            sender.request("bad-to-lax", b"orders", timeout=10)
        wait_for(lambda: any(r.code_name == "bad_signature" for r in refused_at_receiver), 20,
                 "the receiving library's refusal")
        assert got == []
    finally:
        for a in made:
            a.close()
        del tpm
        gc.collect()


# ---- failures ----

@pytest.fixture(scope="module")
def fed() -> Iterator[FederatedBus]:
    # east talks to NATS node 0 only, west to node 1 only: a partition between those
    # two nodes separates them (NATS does not relay between routes through node 2).
    f = FederatedBus({"east": {"nats_nodes": [0]}, "west": {"nats_nodes": [1]}})
    yield f
    gc.collect()
    f.close()


@pytest.fixture(scope="module")
def pair(fed):
    tpm = agentbus.Tpm(fed.agent_tpm.tcti)
    made: list = []
    make = agents_on(fed, tpm, made)
    a = make("fail-a", "MONITOR", "east")
    b = make("fail-b", "OPTIMIZER", "west")
    b.on_request(lambda m: b"ok " + m.payload)
    wait_for(lambda: reachable(fed, "east", "fail-b") and reachable(fed, "west", "fail-a"), 20, "the pair")
    yield a, b
    for x in made:
        x.close()
    del tpm
    gc.collect()


def works(a, payload: bytes = b"ping") -> bool:
    try:
        return a.request("fail-b", payload, timeout=5).payload == b"ok " + payload
    except agentbus.Error:
        return False


def test_a_broker_killed_and_restarted(fed, pair):
    a, b = pair
    assert works(a)
    fed.kill("west")
    # east presumes west down after stale_after_ms without its heartbeat: envelopes for
    # its agents are refused not_deliverable at once, not left to vanish.
    wait_for(lambda: not reachable(fed, "east", "fail-b"), 20, "east to presume west down")
    with pytest.raises(agentbus.NotDeliverable) as refused:
        a.request("fail-b", b"while west is down", timeout=10)
    assert "west" in refused.value.detail
    fed.start("west")
    # fail-b re-enrols at the restarted west by itself (schemas/protocol.md §10).
    wait_for(lambda: reachable(fed, "east", "fail-b"), 60, "fail-b back at west, seen at east")
    wait_for(lambda: works(a, b"after"), 30, "traffic after west's restart")


def test_a_broker_silent_for_a_while_comes_back_with_its_agents(fed, pair):
    """A broker that misses its heartbeats (stopped past stale_after_ms, not killed) is
    presumed down by the other, then live again at its next heartbeat, and traffic
    between their agents resumes in both directions."""
    import os
    import signal
    a, b = pair
    wait_for(lambda: works(a), 30, "traffic before the pause")
    west = fed.procs["west"].pid
    os.kill(west, signal.SIGSTOP)
    try:
        wait_for(lambda: not reachable(fed, "east", "fail-b"), 20, "east to presume west down")
    finally:
        os.kill(west, signal.SIGCONT)
    # Each broker may have presumed the other down: both views settle before traffic.
    wait_for(lambda: reachable(fed, "east", "fail-b") and reachable(fed, "west", "fail-a"), 30,
             "both brokers to see each other's agent again")
    wait_for(lambda: works(a, b"after the pause"), 30, "traffic after the pause")


def test_a_nats_node_killed(fed, pair):
    a, b = pair
    assert works(a)
    # Node 2 carries neither broker's connection but holds a replica of the directory:
    # with two of three nodes the bucket keeps its quorum and traffic goes on.
    fed.cluster.kill(2)
    for i in range(10):
        assert works(a, f"n2 down {i}".encode())
    fed.cluster.start(2)
    fed.cluster.wait_ready([2])
    # West's node: west reconnects to... nothing else (pinned to node 1), so east sees
    # west go silent and refuses; when node 1 is back, west reconnects and resumes.
    fed.cluster.kill(1)
    wait_for(lambda: not reachable(fed, "east", "fail-b"), 20, "east to presume west unreachable")
    with pytest.raises(agentbus.NotDeliverable):
        a.request("fail-b", b"node 1 down", timeout=10)
    fed.cluster.start(1)
    fed.cluster.wait_ready([1])
    wait_for(lambda: reachable(fed, "east", "fail-b"), 60, "west back on NATS")
    wait_for(lambda: works(a, b"after node 1"), 30, "traffic after node 1's restart")


def test_a_partition_between_nats_nodes(fed, pair):
    a, b = pair
    assert works(a)
    told = []
    a.on_rejected(told.append)
    got = []
    b.on_message(got.append)
    fed.cluster.partition(0, 1, True)
    try:
        # Direct envelopes from east to west cannot cross (NATS does not relay them
        # through node 2). Each one is reported to its sender: unconfirmed (timeout)
        # or, once west's heartbeat is missed, not_deliverable.
        sent = raised = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                a.send("fail-b", f"partitioned {sent}".encode())
            except agentbus.Error:
                raised += 1  # refused at once (no session, not deliverable): the sender knows
            sent += 1
            time.sleep(0.2)
        # Every envelope is delivered or reported: after the receipt deadline (3 s) and
        # the sweep that applies it (1 s), none is left unaccounted for.
        wait_for(lambda: len(got) + len({r.message_id for r in told}) + raised >= sent, 20,
                 "every envelope sent across the partition delivered or reported")
        codes = {r.code_name for r in told}
        assert codes <= {"timeout", "not_deliverable", "no_session", "overloaded"}, codes
        print(f"partition: {sent} sent, {len(got)} delivered, {raised} refused at once, "
              f"{len(told)} reported to the sender: {sorted(codes)}")
    finally:
        fed.cluster.partition(0, 1, False)
    wait_for(lambda: reachable(fed, "east", "fail-b"), 60, "west reachable again after the partition")
    wait_for(lambda: works(a, b"healed"), 30, "traffic after the partition heals")


# ---- a broker authenticated to NATS by a TLS client certificate ----

def test_a_broker_authenticates_to_nats_with_a_tls_client_certificate(tmp_path):
    """The TLS path of [federation]: nats-server requires a client certificate from a
    test CA and maps its subject to a user; a broker with such a certificate connects and
    opens the directory, one with a certificate from another CA is refused by NATS."""
    import json
    import subprocess

    from federation_harness import broker_sections, free_port
    from harness import build_dir

    def run(*args):
        subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=60)

    def ca(name):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", tmp_path / f"{name}.key", "-out", tmp_path / f"{name}.pem", "-days", "2", "-subj", f"/CN={name}")

    def cert(name, issuer, ext):
        (tmp_path / f"{name}.ext").write_text(ext)
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", tmp_path / f"{name}.key", "-out", tmp_path / f"{name}.csr", "-subj", f"/CN={name}")
        run("openssl", "x509", "-req", "-in", tmp_path / f"{name}.csr", "-CA", tmp_path / f"{issuer}.pem",
            "-CAkey", tmp_path / f"{issuer}.key", "-CAcreateserial", "-out", tmp_path / f"{name}.pem", "-days", "2",
            "-extfile", tmp_path / f"{name}.ext")

    ca("ca")
    ca("other-ca")
    cert("server", "ca", "subjectAltName=IP:127.0.0.1\n")
    cert("east", "ca", "extendedKeyUsage=clientAuth\n")
    cert("west", "other-ca", "extendedKeyUsage=clientAuth\n")  # a CA the server does not trust
    port = free_port()
    (tmp_path / "nats.conf").write_text(f"""listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp_path}/js" }}
tls {{ cert_file: "{tmp_path}/server.pem", key_file: "{tmp_path}/server.key", ca_file: "{tmp_path}/ca.pem", verify_and_map: true }}
authorization {{ users: [ {{ user: "CN=east", permissions: {{ publish: {{ allow: [">"] }}, subscribe: {{ allow: [">"] }} }} }},
                          {{ user: "CN=west", permissions: {{ publish: {{ allow: [">"] }}, subscribe: {{ allow: [">"] }} }} }} ] }}
""")
    broker_bin = build_dir() / "broker" / "agentbus-broker"
    trust_bin = build_dir() / "tools" / "agentbus-trust"
    procs = [subprocess.Popen(["nats-server", "-c", str(tmp_path / "nats.conf")],
                              stdout=open(tmp_path / "nats.log", "w"), stderr=subprocess.STDOUT)]
    try:
        def config(name):
            return broker_sections(tmp_path, name, REPO / "config" / "policy.toml", "allow_software = true")
        fps = {}
        for name in ("east", "west"):
            (tmp_path / name).mkdir()
            (tmp_path / f"{name}-id.toml").write_text(config(name))
            fps[name] = subprocess.run([str(broker_bin), "--config", str(tmp_path / f"{name}-id.toml"), "--print-identity"],
                                       check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        for name in ("east", "west"):
            (tmp_path / f"{name}.toml").write_text(config(name) + f"""
[federation]
servers = ["tls://127.0.0.1:{port}"]
tls_ca = "{tmp_path}/ca.pem"
tls_cert = "{tmp_path}/{name}.pem"
tls_key = "{tmp_path}/{name}.key"
replicas = 1

[federation.brokers]
east = "{fps['east']}"
west = "{fps['west']}"
""")
            procs.append(subprocess.Popen([str(broker_bin), "--config", str(tmp_path / f"{name}.toml")],
                                          stdout=open(tmp_path / f"{name}.log", "w"), stderr=subprocess.STDOUT))

        def view(name):
            r = subprocess.run([str(trust_bin), "--admin", f"ipc://{tmp_path}/{name}/admin.sock", "--timeout-ms", "500",
                                "federation", "--json"], capture_output=True, text=True)
            return json.loads(r.stdout) if r.returncode == 0 else {}

        wait_for(lambda: view("east").get("connected") is True, 30, "east connected over TLS")
        wait_for(lambda: "directory bucket agentbus_directory open" in (tmp_path / "east.log").read_text(), 30,
                 "east's directory over TLS")
        wait_for(lambda: view("west").get("federated") is True, 30, "west's admin endpoint")
        # West keeps trying; NATS refuses its certificate every time.
        wait_for(lambda: "TLS handshake error" in (tmp_path / "nats.log").read_text(), 30, "NATS refusing west's certificate")
        time.sleep(1)
        assert view("west").get("connected") is False
        east_brokers = {b["name"]: b for b in view("east")["brokers"]}
        assert east_brokers["west"]["live"] is False  # west never wrote a heartbeat
    finally:
        for p in reversed(procs):
            stop_process(p)
