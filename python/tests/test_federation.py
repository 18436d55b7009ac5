"""Brokers federated over a 3-node NATS cluster with JetStream (issue 15): direct,
topic, wildcard and request traffic between agents at different brokers in all three
signature families; the receiving broker's own checks and the refusal relayed back
to the sender; one name at one broker at a time; revocation seen at every broker."""

from __future__ import annotations

import gc
import re
import time
from typing import Iterator

import pytest

import agentbus
from federation_harness import FederatedBus
from harness import REPO, wait_for

# west's policy lets DEBUGGERs send to nobody; east's (the shipped one) to DEBUGGERs:
# what east accepts, west refuses on its own.
WEST_POLICY = (REPO / "config" / "policy.toml").read_text().replace(
    '[roles.DEBUGGER]\nsuite = "ecdsa-p256-sha256"\nsend_to = ["DEBUGGER"]',
    '[roles.DEBUGGER]\nsuite = "ecdsa-p256-sha256"\nsend_to = []')
assert WEST_POLICY != (REPO / "config" / "policy.toml").read_text()


@pytest.fixture(scope="module")
def fed() -> Iterator[FederatedBus]:
    f = FederatedBus({"east": {}, "west": {"policy_text": WEST_POLICY}})
    yield f
    gc.collect()
    f.close()


@pytest.fixture(scope="module")
def agent_tpm(fed: FederatedBus):
    t = agentbus.Tpm(fed.agent_tpm.tcti)
    yield t
    del t
    gc.collect()


@pytest.fixture
def make_agent(fed: FederatedBus, agent_tpm):
    made = []

    def make(name: str, role: str, broker: str, **kwargs):
        key = agentbus.open_or_create_identity(fed.key_dir(name), role, tpm=agent_tpm)
        a = agentbus.Agent(identity=key, bundle=fed.bundle(name, role, broker), **kwargs)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


def seen_at(fed: FederatedBus, broker: str, agent: str, subscriptions: int = 0) -> float:
    """Waits until `broker` has `agent` reachable (with at least that many
    subscriptions); returns how long it took."""
    started = time.monotonic()

    def ok() -> bool:
        a = fed.where(broker, agent)
        return a is not None and a["reachable"] and a["subscriptions"] >= subscriptions

    wait_for(ok, 20, f"{agent} to be seen at {broker}", interval=0.02)
    return time.monotonic() - started


def test_direct_messages_cross_brokers_in_every_signature_family(fed, make_agent):
    director = make_agent("fed-dir-e", "DIRECTOR", "east")      # RSA-3072-PSS / SHA-384
    architect = make_agent("fed-arch-w", "ARCHITECT", "west")   # ECDSA P-384 / SHA3-384
    monitor = make_agent("fed-mon-e", "MONITOR", "east")        # ECDSA P-256 / SHA-256, tpm-batch
    optimizer = make_agent("fed-opt-w", "OPTIMIZER", "west")    # ECDSA P-256 / SHA-256
    for broker, name in (("east", "fed-arch-w"), ("east", "fed-opt-w"), ("west", "fed-dir-e"), ("west", "fed-mon-e")):
        took = seen_at(fed, broker, name)
        print(f"directory: {name} seen at {broker} {took * 1000:.0f} ms after its enrolment completed")
    got = {a.name: [] for a in (director, architect, optimizer)}
    for a in (director, architect, optimizer):
        a.on_message(got[a.name].append)

    director.send("fed-arch-w", b"from the director")
    architect.send("fed-dir-e", b"from the architect")
    monitor.send("fed-opt-w", b"from the monitor")
    wait_for(lambda: all(got.values()), 30, "a direct message at each recipient")

    m = got["fed-arch-w"][0]
    assert (m.sender, m.sender_role, m.suite, m.payload) == ("fed-dir-e", "DIRECTOR", "rsa3072-pss-sha384",
                                                             b"from the director")
    m = got["fed-dir-e"][0]
    assert (m.sender, m.sender_role, m.suite) == ("fed-arch-w", "ARCHITECT", "ecdsa-p384-sha3-384")
    m = got["fed-opt-w"][0]
    assert (m.sender, m.sender_role, m.suite) == ("fed-mon-e", "MONITOR", "ecdsa-p256-sha256")


def test_topics_and_wildcards_cross_brokers_each_subscriber_once(fed, make_agent):
    publisher = make_agent("fed-pub-e", "MONITOR", "east")
    exact = make_agent("fed-exact-w", "OPTIMIZER", "west")
    wildcard = make_agent("fed-wild-w", "ARCHITECT", "west")
    local = make_agent("fed-local-e", "OPTIMIZER", "east")
    got = {"exact": [], "wild": [], "local": []}
    exact.subscribe("metrics/fed/cpu", got["exact"].append)
    wildcard.subscribe("metrics/>", got["wild"].append)
    local.subscribe("metrics/*/cpu", got["local"].append)
    seen_at(fed, "east", "fed-exact-w", subscriptions=1)
    seen_at(fed, "east", "fed-wild-w", subscriptions=1)

    for i in range(5):
        publisher.publish("metrics/fed/cpu", f"load {i}".encode())
    wait_for(lambda: all(len(v) >= 5 for v in got.values()), 30, "five topic envelopes at each subscriber")
    time.sleep(0.5)  # anything duplicated would have arrived by now
    for name, msgs in got.items():
        assert [m.payload for m in msgs] == [f"load {i}".encode() for i in range(5)], name
        assert all(m.topic == "metrics/fed/cpu" and m.sender == "fed-pub-e" for m in msgs)


def test_request_and_reply_cross_brokers(fed, make_agent):
    asker = make_agent("fed-ask-w", "OPTIMIZER", "west")
    answerer = make_agent("fed-answer-e", "MONITOR", "east")
    answerer.on_request(lambda m: b"answer to " + m.payload)
    seen_at(fed, "west", "fed-answer-e")
    seen_at(fed, "east", "fed-ask-w")
    for i in range(3):
        reply = asker.request("fed-answer-e", f"q{i}".encode(), timeout=20)
        assert reply.type == "reply" and reply.sender == "fed-answer-e" and reply.payload == f"answer to q{i}".encode()


def test_the_receiving_broker_checks_again_and_the_refusal_reaches_the_sender(fed, make_agent):
    sender = make_agent("fed-dbg-e", "DEBUGGER", "east")
    receiver = make_agent("fed-dbg-w", "DEBUGGER", "west")
    got = []
    receiver.on_message(got.append)
    rejections = []
    sender.on_rejected(rejections.append)
    seen_at(fed, "east", "fed-dbg-w")
    # east's policy allows DEBUGGER -> DEBUGGER; west's refuses it: the refusal comes
    # back over the federation to the sender, naming the broker that refused. Here it
    # is the session offer that west refuses, so the request has no session to go on.
    with pytest.raises((agentbus.AclDenied, agentbus.NoSession)):
        sender.request("fed-dbg-w", b"let me in", timeout=20)
    wait_for(lambda: rejections, 10, "the refusal at the sender")
    r = rejections[0]
    assert (r.where, r.code_name, r.recipient) == ("broker", "acl_denied", "fed-dbg-w")
    assert r.detail.endswith("(at broker west)")
    assert got == []
    assert re.search(r"refused envelope from fed-dbg-e to fed-dbg-w: acl_denied", fed.log("west"))


def test_a_name_is_enrolled_at_one_broker_at_a_time(fed, make_agent, agent_tpm):
    first = make_agent("fed-twin", "OPTIMIZER", "east")
    seen_at(fed, "west", "fed-twin")
    key = agentbus.open_or_create_identity(fed.key_dir("fed-twin"), "OPTIMIZER", tpm=agent_tpm)
    with pytest.raises(agentbus.EnrolmentError) as refused:
        agentbus.Agent(identity=key, bundle=fed.bundle("fed-twin", "OPTIMIZER", "west"))
    assert refused.value.code == agentbus.StatusCode.enrolled_elsewhere
    assert "east" in refused.value.detail
    # Once it has left east, west takes it (and east then sees it at west).
    first.close()
    wait_for(lambda: not fed.where("west", "fed-twin")["reachable"], 20, "west to see fed-twin leave east")
    moved = agentbus.Agent(identity=key, bundle=fed.bundle("fed-twin", "OPTIMIZER", "west"))
    try:
        wait_for(lambda: (fed.where("east", "fed-twin") or {}).get("home") == "west", 20, "east to see fed-twin at west")
    finally:
        moved.close()


def test_a_revocation_at_one_broker_holds_at_every_broker(fed, make_agent, agent_tpm):
    victim = make_agent("fed-rev-w", "MONITOR", "west")
    peer = make_agent("fed-peer-e", "OPTIMIZER", "east")
    got = []
    peer.on_message(got.append)
    seen_at(fed, "east", "fed-rev-w")
    seen_at(fed, "west", "fed-peer-e")
    victim.send("fed-peer-e", b"before")
    wait_for(lambda: got, 20, "a message before the revocation")

    started = time.monotonic()
    fed.revoke("west", "fed-rev-w")
    # Applied at east: its record there has no key any more (an agent merely offline
    # keeps its key), and east says why.
    wait_for(lambda: (fed.where("east", "fed-rev-w") or {"fingerprint": ""})["fingerprint"] == "", 20,
             "east to apply west's revocation")
    print(f"directory: revocation at west applied at east after {(time.monotonic() - started) * 1000:.0f} ms")
    wait_for(lambda: "fed-rev-w revoked at broker west" in fed.log("east"), 20, "east's log line")
    # Its key is refused at east too, under another name.
    key = agentbus.open_or_create_identity(fed.key_dir("fed-rev-w"), "MONITOR", tpm=agent_tpm)
    with pytest.raises(agentbus.EnrolmentError) as refused:
        agentbus.Agent(identity=key, bundle=fed.bundle("fed-rev-w-again", "MONITOR", "east"))
    assert refused.value.code == agentbus.StatusCode.revoked_key


def test_trust_tool_shows_the_federation(fed, make_agent):
    make_agent("fed-shown-e", "MONITOR", "east")
    seen_at(fed, "west", "fed-shown-e")
    out = fed.run(fed.trust_bin, "--admin", fed.admin("west"), "federation").stdout
    assert re.search(r"^east\s+yes\s", out, re.M) and re.search(r"^west \(this\)\s+yes\s", out, re.M)
    assert re.search(r"^fed-shown-e\s+MONITOR\s+east\s+yes\s+yes", out, re.M)


def test_a_queue_group_spans_brokers_one_member_per_envelope(fed, make_agent):
    publisher = make_agent("fed-qpub-e", "MONITOR", "east")
    workers = {name: make_agent(name, "OPTIMIZER", broker)
               for name, broker in (("fed-w1-e", "east"), ("fed-w2-w", "west"), ("fed-w3-w", "west"))}
    plain = make_agent("fed-qplain-w", "ARCHITECT", "west")
    got = {name: [] for name in workers}
    everything = []
    for name, w in workers.items():
        # One group, reached through a topic and through a pattern: pooled.
        w.queue_subscribe("metrics/jobs" if name != "fed-w3-w" else "metrics/*", "workers", got[name].append)
    plain.subscribe("metrics/jobs", everything.append)
    for name in ("fed-w2-w", "fed-w3-w", "fed-qplain-w"):
        seen_at(fed, "east", name, subscriptions=1)

    for i in range(30):
        publisher.publish("metrics/jobs", f"job {i}".encode())
    wait_for(lambda: sum(len(v) for v in got.values()) >= 30 and len(everything) >= 30, 30, "30 jobs taken, 30 seen")
    time.sleep(0.5)  # a duplicate would have arrived by now
    taken = sorted(m.payload for v in got.values() for m in v)
    assert taken == sorted(f"job {i}".encode() for i in range(30))  # each job exactly once
    assert all(len(v) == 10 for v in got.values()), {k: len(v) for k, v in got.items()}  # in turn
    assert len(everything) == 30  # a plain subscriber still gets every envelope


def test_topics_cross_brokers_in_the_other_signature_families(fed, make_agent):
    director = make_agent("fed-tdir-e", "DIRECTOR", "east")      # RSA-3072-PSS / SHA-384
    architect = make_agent("fed-tarch-w", "ARCHITECT", "west")   # ECDSA P-384 / SHA3-384
    at_architect, at_director = [], []
    architect.subscribe("directives/>", at_architect.append)
    director.subscribe("design/>", at_director.append)
    seen_at(fed, "east", "fed-tarch-w", subscriptions=1)
    seen_at(fed, "west", "fed-tdir-e", subscriptions=1)
    director.publish("directives/fed", b"from the director")
    architect.publish("design/fed", b"from the architect")
    wait_for(lambda: at_architect and at_director, 30, "a topic envelope each way")
    m = at_architect[0]
    assert (m.sender, m.suite, m.topic, m.payload) == ("fed-tdir-e", "rsa3072-pss-sha384", "directives/fed",
                                                       b"from the director")
    m = at_director[0]
    assert (m.sender, m.suite, m.topic) == ("fed-tarch-w", "ecdsa-p384-sha3-384", "design/fed")


def test_a_key_rotated_at_one_broker_reaches_peers_at_another(fed, make_agent, agent_tpm):
    peer = make_agent("fed-rot-peer-e", "OPTIMIZER", "east")
    got = []
    peer.on_message(got.append)
    first = make_agent("fed-rot-w", "MONITOR", "west")
    seen_at(fed, "east", "fed-rot-w")
    first.send("fed-rot-peer-e", b"with the first key")
    wait_for(lambda: len(got) == 1, 20, "a message under the first key")
    old_fp = fed.where("east", "fed-rot-w")["fingerprint"]
    first.close()

    # The same name, a new TPM key, authorised by a new token at its broker: the record
    # the directory carries changes, east tells its agents (key_changed), and the peer
    # takes the new key on its next lookup.
    key = agentbus.open_or_create_identity(fed.key_dir("fed-rot-w-2"), "MONITOR", tpm=agent_tpm)
    second = agentbus.Agent(identity=key, bundle=fed.bundle("fed-rot-w", "MONITOR", "west"))
    try:
        wait_for(lambda: (fed.where("east", "fed-rot-w") or {}).get("fingerprint") not in (None, old_fp)
                 and fed.where("east", "fed-rot-w")["reachable"], 20, "east to hold the new key")
        second.send("fed-rot-peer-e", b"with the second key")
        wait_for(lambda: len(got) == 2, 20, "a message under the new key")
        assert got[1].payload == b"with the second key" and got[1].sender == "fed-rot-w"
    finally:
        second.close()
