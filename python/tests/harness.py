"""A real bus for the Python tests: swtpm processes, an agentbus-broker and an
operator who issues enrolment bundles, each in a private temporary directory and
torn down afterwards. Used by the binding's tests (test_*.py), the out-of-tree C++
agent's test and the Debian package's test.

Binaries come from AGENTBUS_BUILD_DIR (ctest sets it) or, for the package test, from
an extracted root (Bus(bin_dir=...)).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    return Path(os.environ.get("AGENTBUS_BUILD_DIR", REPO / "build")).resolve()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def stop_process(p: Optional[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after 10 s; nothing for a process already gone."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def make_operator_key(key_bin: Path, policy: Path, directory: Path, run) -> str:
    """A software operator key (DEBUGGER's suite) in `directory`; returns the policy block
    that lists it as operator `test-operator`. `run(*args)` runs a tool, returns stdout."""
    out = run(key_bin, "--policy", policy, "create", "--role", "DEBUGGER", "--dir", directory, "--software")
    m = re.search(r"^fingerprint\s+(?:sha256:)?([0-9a-f]{64})", out, re.M)
    if not m:
        raise RuntimeError(f"no fingerprint in agentbus-key's output: {out}")
    return f'\n[operators.test-operator]\nfingerprint = "{m.group(1)}"\n'


class Swtpm:
    """A private swtpm on UNIX sockets (TCTI swtpm:path=<dir>/sock)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True)
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.dir}",
             "--server", f"type=unixio,path={self.dir}/sock",
             "--ctrl", f"type=unixio,path={self.dir}/sock.ctrl",
             "--flags", "not-need-init,startup-clear", "--log", f"file={self.dir}/swtpm.log,level=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (self.dir / "sock").exists() or self.proc.poll() is not None, 10, "swtpm's socket")
        if self.proc.poll() is not None:
            raise RuntimeError(f"swtpm exited: {(self.dir / 'swtpm.log').read_text(errors='replace')}")
        self.tcti = f"swtpm:path={self.dir}/sock"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bus:
    """swtpm + broker + operator. `bundle(name, role)` issues an enrolment bundle."""

    def __init__(self, *, bin_dir: Optional[Path] = None, broker_config: Optional[Path] = None,
                 policy: Optional[Path] = None, broker_env: Optional[Dict[str, str]] = None,
                 log_format: str = "text", metrics_allow: Optional[List[str]] = None) -> None:
        b = build_dir()
        self.broker_bin = (bin_dir / "agentbus-broker") if bin_dir else b / "broker" / "agentbus-broker"
        self.trust_bin = (bin_dir / "agentbus-trust") if bin_dir else b / "tools" / "agentbus-trust"
        self.key_bin = (bin_dir / "agentbus-key") if bin_dir else b / "tools" / "agentbus-key"
        for tool in (self.broker_bin, self.trust_bin, self.key_bin):
            if not tool.exists():
                raise RuntimeError(f"{tool} is not built")
        self.dir = Path(tempfile.mkdtemp(prefix="agentbus-pytest."))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.processes: List[subprocess.Popen] = []
        self.swtpms: List[Swtpm] = []
        self.endpoint = f"ipc://{self.dir}/broker.sock"
        self.admin = f"ipc://{self.dir}/admin.sock"
        # Not what a CI runner started by systemd has in its own environment.
        inherited = {k: v for k, v in os.environ.items()
                     if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")}
        self.broker_env = {**inherited, **(broker_env or {})}
        self.log_format = log_format
        self.metrics_allow = metrics_allow
        try:
            self.broker_tpm = self.swtpm("broker")
            self.agent_tpm = self.swtpm("agents")
            self._make_operator(policy or REPO / "config" / "policy.toml")
            self._start_broker(broker_config)
        except BaseException:
            self.close()
            raise

    def swtpm(self, name: str) -> Swtpm:
        t = Swtpm(self.dir / "tpm" / name)
        self.swtpms.append(t)
        return t

    def _run(self, *args: str, log: str) -> str:
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
        with open(self.logs / log, "a") as f:
            f.write(f"$ {' '.join(map(str, args))}\n{r.stdout}{r.stderr}\n")
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout

    def _make_operator(self, policy: Path) -> None:
        block = make_operator_key(self.key_bin, policy, self.dir / "operator",
                                  lambda *a: self._run(*a, log="operator.log"))
        self.policy = self.dir / "policy.toml"
        self.policy.write_text(policy.read_text() + block)

    def _start_broker(self, config: Optional[Path]) -> None:
        if config is None:
            config = self.dir / "broker.toml"
            config.write_text(f"""[broker]
name = "pytest-broker"
endpoints = ["{self.endpoint}"]
policy = "{self.policy}"
state_dir = "{self.dir}/broker"
admin_endpoint = "{self.admin}"

[identity]
key_dir = "{self.dir}/broker/key"
tcti = "{self.broker_tpm.tcti}"
allow_software = false
suite = "ecdsa-p256-sha256"

[metrics]
listen = "127.0.0.1:0"
{"" if self.metrics_allow is None else "allow = " + json.dumps(self.metrics_allow)}

[logging]
format = "{self.log_format}"
level = "info"
""")
            self.config = config
            args: List[str] = []
        else:
            # A shipped configuration, pointed at this run's files.
            args = ["--tcti", self.broker_tpm.tcti, "--state-dir", f"{self.dir}/broker", "--key-dir",
                    f"{self.dir}/broker/key", "--policy", str(self.policy), "--endpoint", self.endpoint,
                    "--admin-endpoint", self.admin]
        (self.dir / "broker").mkdir(exist_ok=True)
        self.broker_log = self.logs / "broker.log"
        log = open(self.broker_log, "w")
        self.broker = subprocess.Popen([str(self.broker_bin), "--config", str(config), *args], stdout=log,
                                       stderr=subprocess.STDOUT, env=self.broker_env)
        self.processes.append(self.broker)

        def ready() -> bool:
            if self.broker.poll() is not None:
                raise RuntimeError(f"the broker exited ({self.broker.returncode}): {self.broker_log.read_text()}")
            r = subprocess.run([str(self.trust_bin), "--admin", self.admin, "--timeout-ms", "500", "broker"],
                               capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() != ""

        wait_for(ready, 60, "the broker's admin endpoint", interval=0.1)

    def broker_identity(self) -> dict:
        """The admin endpoint's `broker` answer (name, fingerprint, metrics_url, ...)."""
        return json.loads(self._run(self.trust_bin, "--admin", self.admin, "broker", "--json", log="admin.log"))

    def bundle(self, name: str, role: str) -> Path:
        out = self.dir / "bundles" / f"{name}.toml"
        out.parent.mkdir(mode=0o700, exist_ok=True)
        self._run(self.trust_bin, "--admin", self.admin, "token", "create", name, "--role", role, "--endpoint",
                  self.endpoint, "--ttl", "600", "--out", out, "--operator-key", self.dir / "operator",
                  "--operator", "test-operator", log="operator.log")
        return out

    def key_dir(self, name: str) -> Path:
        return self.dir / "keys" / name

    def close(self) -> None:
        for p in self.processes:
            stop_process(p)
        for t in self.swtpms:
            t.stop()
        if os.environ.get("AGENTBUS_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
