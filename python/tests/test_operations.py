"""The broker as an operator runs it (issue 14): metrics Prometheus scrapes over HTTP
(checked by promtool from Debian's prometheus package), health probes, and SIGHUP
reloading the policy while agents stay connected."""

from __future__ import annotations

import gc
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from typing import Dict, List, Tuple

import pytest

import agentbus
from harness import Bus, wait_for


def http_get(url: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> Dict[str, float]:
    """{'name{labels}': value} for every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture
def own_bus():
    b = Bus()
    yield b
    gc.collect()
    b.close()


def make(bus: Bus, tpm, name: str, role: str, **kwargs) -> agentbus.Agent:
    key = agentbus.open_or_create_identity(bus.key_dir(name), role, tpm=tpm)
    return agentbus.Agent(identity=key, bundle=bus.bundle(name, role), **kwargs)


def test_a_live_broker_scrapes_clean_with_promtool_over_http(own_bus):
    url = own_bus.broker_identity()["metrics_url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
    status, fresh = http_get(url + "/metrics")
    assert status == 200
    # Every family from the start, the error counters at 0 before any error.
    for series in ("agentbus_internal_errors_total 0", "agentbus_registry_errors_total 0",
                   'agentbus_enrolments_total{outcome="accepted"} 0', "agentbus_agents_online 0",
                   'agentbus_reloads_total{outcome="refused"} 0'):
        assert f"\n{series}\n" in fresh, series

    tpm = agentbus.Tpm(own_bus.agent_tpm.tcti)
    mon = make(own_bus, tpm, "ops-mon-1", "MONITOR")
    opt = make(own_bus, tpm, "ops-opt-1", "OPTIMIZER")
    got: List[agentbus.Message] = []
    opt.subscribe("metrics/cpu", got.append)
    mon.publish("metrics/cpu", b"1")
    wait_for(lambda: got, 15, "the published envelope")

    status, text = http_get(url + "/metrics")
    assert status == 200
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", \
        f"promtool: {check.stdout}{check.stderr}\n{text}"
    s = samples(text)
    assert s['agentbus_enrolments_total{outcome="accepted"}'] == 2
    assert s["agentbus_agents_online"] == 2
    # The broker's TPM: a histogram in seconds per operation (it signed both CHALLENGEs).
    assert s['agentbus_tpm_operation_duration_seconds_count{operation="sign"}'] >= 2
    assert s['agentbus_tpm_operation_duration_seconds_bucket{operation="sign",le="+Inf"}'] == \
        s['agentbus_tpm_operation_duration_seconds_count{operation="sign"}']
    assert s['agentbus_tpm_operation_failures_total{operation="sign"}'] == 0
    assert not any("label=" in k for k in s), "every label is named after what it holds"

    assert http_get(url + "/healthz") == (200, "ok\n")
    assert http_get(url + "/readyz") == (200, "ok\n")
    assert http_get(url + "/nothing")[0] == 404
    mon.close()
    opt.close()


def test_the_metrics_endpoint_answers_only_the_allowed_addresses():
    # 127.0.0.1 is not in the allow list: the connection is refused before a request is read.
    bus = Bus(metrics_allow=["10.0.0.0/8"])
    try:
        url = bus.broker_identity()["metrics_url"]
        port = int(url.rsplit(":", 1)[1])
        # It listens (the TCP connection is accepted) and then closes without an answer.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200"), answer
        with pytest.raises(OSError) as e:  # URLError and a reset connection are OSErrors
            urllib.request.urlopen(url + "/metrics", timeout=5).read()
        assert not isinstance(e.value, urllib.error.HTTPError) or e.value.code == 403, e.value
        assert bus.broker.poll() is None
    finally:
        bus.close()


def broker_log_lines(bus: Bus, pattern: str) -> List[str]:
    return [line for line in bus.broker_log.read_text().splitlines() if re.search(pattern, line)]


def test_sighup_reloads_a_changed_acl_that_a_connected_agent_feels_at_once(own_bus):
    tpm = agentbus.Tpm(own_bus.agent_tpm.tcti)
    mon = make(own_bus, tpm, "reload-mon", "MONITOR")
    opt = make(own_bus, tpm, "reload-opt", "OPTIMIZER")
    refused: List[agentbus.Rejection] = []
    withdrawn: List[agentbus.Rejection] = []
    mon.on_rejected(refused.append)
    opt.on_rejected(withdrawn.append)
    direct: List[agentbus.Message] = []
    topic: List[agentbus.Message] = []
    opt.on_message(direct.append)
    opt.subscribe("metrics/cpu", topic.append)
    mon.publish("metrics/cpu", b"before")
    mon.send("reload-opt", "before")
    wait_for(lambda: topic and direct, 15, "traffic before the reload")

    # The operator takes metrics/ from the MONITOR's publish rights and from the
    # OPTIMIZER's subscriptions, and reloads.
    original = own_bus.policy.read_text()
    changed = original.replace('publish = ["metrics/>", "alerts/>"]\nsubscribe = ["directives/>", "metrics/>"]',
                               'publish = ["alerts/>"]\nsubscribe = ["directives/>", "metrics/>"]', 1)
    changed = changed.replace('[roles.OPTIMIZER]\nprofile = "realtime"\nsend_to = ["DIRECTOR", "MONITOR"]\n'
                              'publish = ["metrics/>"]\nsubscribe = ["directives/>", "metrics/>"]',
                              '[roles.OPTIMIZER]\nprofile = "realtime"\nsend_to = ["DIRECTOR", "MONITOR"]\n'
                              'publish = ["metrics/>"]\nsubscribe = ["directives/>"]', 1)
    assert changed.count('publish = ["alerts/>"]') == 1 and 'subscribe = ["directives/>"]\n' in changed
    own_bus.policy.write_text(changed)
    own_bus.broker.send_signal(signal.SIGHUP)
    wait_for(lambda: broker_log_lines(own_bus, "reload applied"), 15, "the reload")
    assert own_bus.broker.poll() is None
    assert broker_log_lines(own_bus, r"reload: role MONITOR: publish \[metrics/>, alerts/>\] -> \[alerts/>\]")
    assert broker_log_lines(own_bus, r"reload-opt \(OPTIMIZER\): subscription to metrics/cpu withdrawn")

    # The OPTIMIZER is told its subscription ended; the MONITOR's next publish is refused.
    wait_for(lambda: withdrawn, 10, "the withdrawal report")
    assert withdrawn[0].code == agentbus.StatusCode.acl_denied and "withdrawn" in withdrawn[0].detail, withdrawn
    mon.publish("metrics/cpu", b"after")
    wait_for(lambda: refused, 10, "the refusal of the publish")
    assert refused[0].where == "broker" and refused[0].code == agentbus.StatusCode.acl_denied, refused
    # Compliant traffic goes on over the same sessions: no re-enrolment.
    mon.send("reload-opt", "after")
    wait_for(lambda: len(direct) == 2, 10, "a direct message after the reload")
    assert mon.stats().reenrolments == 0 and opt.stats().reenrolments == 0
    assert len(topic) == 1

    # A broken policy file: refused, the running policy kept, the broker serving.
    own_bus.policy.write_text(changed + "\n[roles.MONITOR]\nthis is not toml\n")
    own_bus.broker.send_signal(signal.SIGHUP)
    wait_for(lambda: broker_log_lines(own_bus, "reload refused"), 15, "the refused reload")
    line = broker_log_lines(own_bus, "reload refused")[0]
    assert str(own_bus.policy) in line, line
    assert own_bus.broker.poll() is None
    mon.publish("metrics/cpu", b"still refused")
    wait_for(lambda: len(refused) == 2, 10, "the running (reloaded) policy still refuses")
    mon.send("reload-opt", "still flowing")
    wait_for(lambda: len(direct) == 3, 10, "a direct message after the refused reload")
    s = samples(http_get(own_bus.broker_identity()["metrics_url"] + "/metrics")[1])
    assert s['agentbus_reloads_total{outcome="applied"}'] == 1
    assert s['agentbus_reloads_total{outcome="refused"}'] == 1
    assert s["agentbus_reload_subscriptions_withdrawn_total"] == 1

    # A revocation by reload closes the agent at once; its peer is told.
    own_bus.policy.write_text(changed.replace("revoked = []", 'revoked = ["reload-opt"]', 1))
    own_bus.broker.send_signal(signal.SIGHUP)
    wait_for(lambda: len(broker_log_lines(own_bus, "reload applied")) == 2, 15, "the second reload")
    assert broker_log_lines(own_bus, r"reload: revoked agent \+reload-opt")
    assert broker_log_lines(own_bus, "reload-opt revoked: connection and sessions torn down")
    with pytest.raises(agentbus.Error):
        mon.request("reload-opt", b"anyone?", timeout=3)
    mon.close()
    opt.close()
