"""The Python binding against a real broker and swtpm: enrolment, each message kind,
refusals as exceptions, handlers that raise, many threads, shutdown, collection."""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
import weakref

import pytest

import agentbus
from harness import wait_for


def test_enrols_with_a_tpm_identity_and_reports_it(bus, agent_tpm):
    # The bundle names the broker's fingerprint as agentbus-key prints fingerprints
    # ("sha256:", here upper case): read the same as the bare hex.
    bundle = bus.bundle("py-mon-enrol", "MONITOR")
    text = bundle.read_text()
    fp = re.search(r'^broker_fingerprint = "([0-9a-f]{64})"$', text, re.M).group(1)
    bundle.write_text(text.replace(f'"{fp}"', f'"SHA256:{fp.upper()}"'))
    key = agentbus.open_or_create_identity(bus.key_dir("py-mon-enrol"), "MONITOR", tpm=agent_tpm)
    with agentbus.Agent(identity=key, bundle=bundle) as a:
        assert a.name == "py-mon-enrol"
        assert not a.closed
        assert a.stats().sent == 0
        assert "enrolled" in repr(a)
    assert a.closed


def test_topic_direct_and_request_reply(make_agent):
    mon = make_agent("py-mon-1", "MONITOR")
    opt = make_agent("py-opt-1", "OPTIMIZER")
    got_topic, got_direct = [], []
    opt.subscribe("metrics/cpu", got_topic.append)
    opt.on_message(got_direct.append)
    mon.on_request(lambda m: b"load=" + m.payload)

    mon.publish("metrics/cpu", b'{"cpu":0.5}', content_type="application/json")
    mon.send("py-opt-1", "hello")
    wait_for(lambda: got_topic and got_direct, 15, "the topic and the direct message")

    t = got_topic[0]
    assert (t.sender, t.sender_role, t.topic, t.type) == ("py-mon-1", "MONITOR", "metrics/cpu", "data")
    assert t.payload == b'{"cpu":0.5}' and t.content_type == "application/json"
    assert t.assurance == "tpm" and t.sender_protection == "tpm" and t.suite == "ecdsa-p256-sha256"
    d = got_direct[0]
    assert d.topic is None and d.recipient == "py-opt-1" and d.payload == b"hello"
    assert d.content_type.startswith("text/plain")

    reply = opt.request("py-mon-1", b"how busy?", timeout=10)
    assert reply.type == "reply" and reply.sender == "py-mon-1" and reply.payload == b"load=how busy?"
    assert len(reply.correlation_id) == 16
    assert mon.stats().sent >= 3 and opt.stats().received >= 3
    # The TPM work behind the identity: it signed (direct envelopes, the handshakes),
    # and each operation's latency histogram accounts for every call.
    ops = {o.operation: o for o in mon.stats().tpm_operations}
    assert ops["sign"].count >= 3 and ops["sign"].failures == 0, ops
    for o in ops.values():
        assert sum(n for _, n in o.latency_buckets) == o.count, o
        assert o.latency_buckets[-1][0] == float("inf") and o.total_seconds > 0


def test_refusals_surface_as_exceptions_with_stable_codes(bus, make_agent, agent_tpm):
    opt = make_agent("py-opt-refused", "OPTIMIZER")
    # The policy does not let an OPTIMIZER follow debug/ topics: the broker says acl_denied.
    with pytest.raises(agentbus.AclDenied) as e:
        opt.subscribe("debug/trace", lambda m: None)
    assert e.value.code == agentbus.StatusCode.acl_denied == 405
    assert isinstance(e.value, agentbus.Error)
    # Nobody answers: Timeout, which is also the builtin TimeoutError.
    mon = make_agent("py-mon-silent", "MONITOR")
    with pytest.raises(TimeoutError) as t:
        opt.request("py-mon-silent", b"anyone?", timeout=0.5)
    assert t.value.code == agentbus.StatusCode.timeout
    assert mon.stats().received >= 1
    # Enrolment without a token for a token role: EnrolmentError(not_authorised).
    key = agentbus.open_or_create_identity(bus.key_dir("py-no-token"), "MONITOR", tpm=agent_tpm)
    bundle = bus.bundle("py-other-name", "MONITOR")
    opts = dict(broker=bus.endpoint, identity=key, connect_timeout=10)
    with pytest.raises(agentbus.EnrolmentError) as en:
        import tomllib
        fingerprint = tomllib.loads(bundle.read_text())["broker_fingerprint"]
        agentbus.Agent("py-no-token", broker_fingerprint=fingerprint, **{k: v for k, v in opts.items()})
    assert en.value.code == agentbus.StatusCode.not_authorised
    # Options the library cannot use are the caller's error: ValueError (C++ invalid_argument).
    with pytest.raises(ValueError, match="broker_endpoint"):
        agentbus.Agent("py-bad-endpoint", identity=key, broker="foo://nowhere", broker_fingerprint="00" * 32)
    with pytest.raises(ValueError, match="broker_transport_key"):
        agentbus.Agent("py-bad-endpoint", identity=key, broker="tcp://127.0.0.1:1", broker_fingerprint="00" * 32)
    # A bundle for another role than the identity's is refused before anything is sent.
    with pytest.raises(ValueError):
        agentbus.Agent(identity=key, bundle=bus.bundle("py-wrong-role", "OPTIMIZER"))


def test_a_raising_handler_is_logged_and_the_agent_goes_on(make_agent, caplog):
    mon = make_agent("py-mon-raise", "MONITOR")
    opt = make_agent("py-opt-raise", "OPTIMIZER")
    seen = []

    def handler(m):
        seen.append(m.payload)
        if m.payload == b"bad":
            raise ValueError("handler bug")

    opt.subscribe("metrics/raise", handler)
    with caplog.at_level(logging.ERROR, logger="agentbus"):
        mon.publish("metrics/raise", b"bad")
        mon.publish("metrics/raise", b"good")
        wait_for(lambda: len(seen) == 2, 15, "both envelopes at the raising handler")
    assert seen == [b"bad", b"good"]
    assert opt.handler_errors == 1
    assert any("handler bug" in (r.exc_text or "") or "raised" in r.getMessage() for r in caplog.records)
    # A request handler that raises sends no reply: the requester times out, the agent goes on.
    mon.on_request(lambda m: 1 / 0)
    with pytest.raises(agentbus.Timeout):
        opt.request("py-mon-raise", b"divide", timeout=0.5)
    assert mon.handler_errors == 1
    mon.on_request(lambda m: "fine")
    assert opt.request("py-mon-raise", b"again", timeout=10).payload == b"fine"


def test_many_threads_call_in(make_agent):
    mon = make_agent("py-mon-threads", "MONITOR")
    opt = make_agent("py-opt-threads", "OPTIMIZER")
    got = []
    lock = threading.Lock()

    def on(m):
        with lock:
            got.append(m.payload)

    opt.subscribe("metrics/threads", on)
    opt.on_message(on)
    mon.on_request(lambda m: m.payload)
    errors = []

    def work(i: int) -> None:
        try:
            for j in range(15):
                mon.publish("metrics/threads", f"t{i}-{j}")
                mon.send("py-opt-threads", f"d{i}-{j}")
            assert opt.request("py-mon-threads", f"r{i}", timeout=20).payload == f"r{i}".encode()
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    wait_for(lambda: len(got) == 8 * 15 * 2, 30, "every envelope from the 8 threads")
    assert sorted(got) == sorted([f"{k}{i}-{j}".encode() for k in "td" for i in range(8) for j in range(15)])


def test_close_with_handlers_pending(make_agent):
    mon = make_agent("py-mon-close", "MONITOR")
    opt = make_agent("py-opt-close", "OPTIMIZER")
    calls = []
    started = threading.Event()

    def slow(m):
        started.set()
        time.sleep(0.1)
        calls.append(m.payload)

    opt.subscribe("metrics/slow", slow)
    for i in range(30):
        mon.publish("metrics/slow", f"{i}")
    assert started.wait(15)
    opt.close()
    assert opt.closed
    after_close = len(calls)
    assert after_close < 30  # handlers were still pending
    time.sleep(0.5)
    assert len(calls) == after_close  # and none ran after close returned
    with pytest.raises(RuntimeError, match="closed"):
        opt.publish("metrics/slow", b"x")
    opt.close()  # idempotent
    # Closing from inside a handler returns at once; the agent stops after it.
    closer = make_agent("py-opt-self-close", "OPTIMIZER")
    closed_in_handler = threading.Event()

    def close_me(m):
        closer.close()
        closed_in_handler.set()

    closer.subscribe("metrics/self", close_me)
    mon.publish("metrics/self", b"bye")
    assert closed_in_handler.wait(15)
    assert closer.closed
    agentbus._agentbus._join_closing()  # its teardown thread ends (the atexit hook waits the same way)
    # The broker saw it leave: a direct message to it is refused as not deliverable.
    refused = []
    mon.on_rejected(refused.append)
    mon.send("py-opt-self-close", b"still there?")
    wait_for(lambda: refused, 15, "the refusal of a message to the closed agent")
    assert refused[0].code_name in ("not_deliverable", "no_session")


def test_an_agent_collected_while_connected_is_closed(bus, agent_tpm):
    key = agentbus.open_or_create_identity(bus.key_dir("py-opt-gc"), "OPTIMIZER", tpm=agent_tpm)

    def connect():
        # Handlers that refer to their own agent: a cycle through the handlers, which
        # only the cycle collector can break (the C++ core must not hold them strongly).
        a = agentbus.Agent(identity=key, bundle=bus.bundle("py-opt-gc", "OPTIMIZER"))
        a.on_request(lambda m: a.name)
        a.subscribe("metrics/gc", lambda m: a.stats())
        return weakref.ref(a), a._core

    ref, core = connect()
    assert ref() is not None and not core.closed  # alive: only the cycle holds it
    gc.collect()
    assert ref() is None
    assert core.closed


def test_errors_pickle_and_copy():
    import copy
    import pickle

    e = agentbus.AclDenied(405, "role X may not")
    for clone in (pickle.loads(pickle.dumps(e)), copy.copy(e)):
        assert type(clone) is agentbus.AclDenied and clone.code == 405 and clone.detail == "role X may not"


def test_identities_and_policy(bus, agent_tpm, tmp_path):
    pol = agentbus.Policy.default()
    assert "OPTIMIZER" in pol.roles
    assert pol.suite_for("DIRECTOR").name == "rsa3072-pss-sha384"
    assert pol.allows_publish("OPTIMIZER", "metrics/cpu") and not pol.allows_publish("OPTIMIZER", "directives/x")
    with pytest.raises(agentbus.UnknownRole):
        pol.suite_for("NOBODY")
    with pytest.raises(agentbus.PolicyFileError):
        agentbus.Policy.parse("[roles.X]\nsuite = 3\n", "bad.toml")
    key = agentbus.create_identity(tmp_path / "arch", "ARCHITECT", tpm=agent_tpm)
    assert key.protection == "tpm" and key.suite.name == pol.suite_for("ARCHITECT").name
    assert key.verify(b"abc", key.sign(b"abc")) and not key.verify(b"abd", key.sign(b"abc"))
    assert agentbus.open_identity(tmp_path / "arch", tpm=agent_tpm).fingerprint == key.fingerprint
    with pytest.warns(agentbus.SoftwareKeyWarning):
        soft = agentbus.create_identity(tmp_path / "dbg", "DEBUGGER", software=True)
    assert soft.protection == "software"
    with pytest.raises(agentbus.IdentityError):
        agentbus.create_identity(tmp_path / "arch", "ARCHITECT", tpm=agent_tpm)
    with pytest.raises(agentbus.TpmError):
        agentbus.Tpm("")
    # A second Tpm for the same TCTI shares the connection: on a TPM without a resource
    # manager a second connection would flush the first's objects (and break agent_tpm's
    # identities for the tests after this one).
    assert agentbus.Tpm(bus.agent_tpm.tcti).info()["simulator"] is True


def test_pattern_subscriptions_and_unsubscribe(bus, make_agent):
    mon = make_agent("py-pat-mon", "MONITOR")
    opt = make_agent("py-pat-opt", "OPTIMIZER")
    deep: list = []
    one_level: list = []
    opt.subscribe("metrics/>", deep.append)
    opt.subscribe("metrics/*/load", one_level.append)
    mon.publish("metrics/cpu", b"1")
    mon.publish("metrics/host-1/load", b"2")
    mon.publish("metrics/host-1/load/avg", b"3")
    wait_for(lambda: len(deep) == 3 and len(one_level) == 1, 15, "the envelopes the patterns match")
    assert sorted(m.topic for m in deep) == ["metrics/cpu", "metrics/host-1/load", "metrics/host-1/load/avg"]
    assert [m.payload for m in one_level] == [b"2"], "each matching subscription gets the envelope once"
    # What the policy does not cover, and what is no pattern, are refused.
    with pytest.raises(agentbus.AclDenied):
        opt.subscribe("debug/>", lambda m: None)
    with pytest.raises(agentbus.InvalidField):
        opt.subscribe("metrics/>/x", lambda m: None)
    with pytest.raises(agentbus.InvalidField):
        mon.publish("metrics/*", b"wildcards are for subscriptions")
    # Unsubscribed: nothing more reaches that handler; the other subscription goes on.
    opt.unsubscribe("metrics/>")
    mon.publish("metrics/other-host/load", b"4")
    wait_for(lambda: len(one_level) == 2, 15, "the envelope the remaining pattern matches")
    time.sleep(0.3)
    assert len(deep) == 3
    with pytest.raises(agentbus.InvalidField):
        opt.unsubscribe("metrics/>")
