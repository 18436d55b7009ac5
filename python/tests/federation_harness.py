"""A federation for the tests: a nats-server cluster with JetStream on loopback and
several agentbus brokers, each with its own swtpm, NKEY and confined subjects, all in
one private temporary directory torn down afterwards.

NatsCluster starts N nats-server nodes (own ports, own JetStream store directories);
node routes go through RouteLinks, small TCP relays the tests can cut (a network
partition between two nodes without root or firewall rules). FederatedBus builds the
brokers on it: each broker's identity is made first (agentbus-broker
--print-identity), then every broker's configuration names all of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from harness import REPO, Swtpm, build_dir, make_operator_key, stop_process, wait_for

PREFIX = "agentbus"
BUCKET = "agentbus_directory"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RouteLink:
    """A TCP relay 127.0.0.1:listen -> 127.0.0.1:target that can be cut (existing
    connections closed, new ones refused) and restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.cut = False
        self.closed = False
        self.pairs: List[Tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            with self.lock:
                for a, b in self.pairs:
                    for s in (a, b):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                            s.close()
                        except OSError:
                            pass
                self.pairs.clear()

    def close(self) -> None:
        self.closed = True
        self.set_cut(True)
        self.server.close()


class NatsCluster:
    """N nats-server nodes in one cluster with JetStream. `users` maps an NKEY public
    key to its permissions ({"publish": [...], "subscribe": [...]})."""

    def __init__(self, directory: Path, users: Dict[str, dict], nodes: int = 3) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True)
        self.users = users
        self.n = nodes
        self.client_ports = [free_port() for _ in range(nodes)]
        self.route_ports = [free_port() for _ in range(nodes)]
        self.http_ports = [free_port() for _ in range(nodes)]
        # links[(i, j)]: node i's route to node j goes through a relay.
        self.links: Dict[Tuple[int, int], RouteLink] = {}
        for i in range(nodes):
            for j in range(nodes):
                if i != j:
                    self.links[(i, j)] = RouteLink(self.route_ports[j])
        self.procs: List[Optional[subprocess.Popen]] = [None] * nodes
        for i in range(nodes):
            self._write_config(i)
            self.start(i)
        self.wait_ready()

    @property
    def urls(self) -> List[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    def _write_config(self, i: int) -> None:
        routes = ", ".join(f"nats-route://127.0.0.1:{self.links[(i, j)].port}" for j in range(self.n) if j != i)
        users = ",\n    ".join(
            "{ nkey: %s, permissions: { publish: { allow: %s }, subscribe: { allow: %s } } }"
            % (pub, json.dumps(p["publish"]), json.dumps(p["subscribe"])) for pub, p in self.users.items())
        (self.dir / f"n{i}.conf").write_text(f"""server_name: n{i}
listen: 127.0.0.1:{self.client_ports[i]}
http: 127.0.0.1:{self.http_ports[i]}
max_payload: 4MB
jetstream {{
  store_dir: "{self.dir}/n{i}/js"
  max_memory_store: 64MB
  max_file_store: 256MB
}}
cluster {{
  name: agentbus-test
  listen: 127.0.0.1:{self.route_ports[i]}
  # Routes only as listed (through the relays): no gossiped implicit routes around them.
  no_advertise: true
  routes: [{routes}]
}}
authorization {{
  users: [
    {users}
  ]
}}
""")

    def start(self, i: int) -> None:
        log = open(self.dir / f"n{i}.log", "a")
        self.procs[i] = subprocess.Popen(["nats-server", "-c", str(self.dir / f"n{i}.conf")], stdout=log,
                                         stderr=subprocess.STDOUT)

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def healthy(self, i: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_ports[i]}/healthz", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def wait_ready(self, nodes: Optional[List[int]] = None, timeout: float = 60) -> None:
        for i in nodes if nodes is not None else range(self.n):
            wait_for(lambda: self.healthy(i), timeout, f"nats node n{i} healthy (JetStream meta leader)", interval=0.2)

    def partition(self, i: int, j: int, cut: bool) -> None:
        """Cut (or restore) the routes between nodes i and j, both ways."""
        self.links[(i, j)].set_cut(cut)
        self.links[(j, i)].set_cut(cut)

    def close(self) -> None:
        for p in self.procs:
            stop_process(p)
        for link in self.links.values():
            link.close()


def broker_permissions(name: str) -> dict:
    """What a broker may do on NATS (schemas/federation.md §2): publish into every
    broker's inbox under its own name only, and use the directory bucket; subscribe to
    its own inbox (and the replies of its own requests)."""
    return {
        "publish": [f"{PREFIX}.b.*.a.{name}.>", f"{PREFIX}.b.*.t.{name}.>", f"{PREFIX}.b.*.n.{name}",
                    f"{PREFIX}.b.*.r.{name}", f"$KV.{BUCKET}.>", f"$JS.API.STREAM.INFO.KV_{BUCKET}",
                    f"$JS.API.STREAM.CREATE.KV_{BUCKET}", f"$JS.API.STREAM.MSG.GET.KV_{BUCKET}",
                    f"$JS.API.DIRECT.GET.KV_{BUCKET}.>", f"$JS.API.CONSUMER.CREATE.KV_{BUCKET}",
                    f"$JS.API.CONSUMER.CREATE.KV_{BUCKET}.>", f"$JS.API.CONSUMER.DELETE.KV_{BUCKET}.>",
                    "$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.FC.>"],
        "subscribe": [f"{PREFIX}.b.{name}.>", "_INBOX.>"],
    }


def broker_sections(root: Path, name: str, policy, identity: str) -> str:
    """The [broker] and [identity] sections of test broker `name`, whose sockets, state
    and key live under root/name (`identity`: its TPM or `allow_software` line)."""
    return f"""[broker]
name = "{name}"
endpoints = ["ipc://{root}/{name}/broker.sock"]
policy = "{policy}"
state_dir = "{root}/{name}/state"
admin_endpoint = "ipc://{root}/{name}/admin.sock"

[identity]
key_dir = "{root}/{name}/key"
{identity}
suite = "ecdsa-p256-sha256"
"""


class FederatedBus:
    """Brokers on one NATS cluster. `brokers` maps a broker name to extra options:
    {"args": [...extra command-line flags], "policy": Path}. bundle(name, role, broker)
    issues an enrolment bundle at that broker."""

    def __init__(self, brokers: Dict[str, dict], *, nats_nodes: int = 3, stale_after_ms: int = 3000) -> None:
        b = build_dir()
        self.broker_bin = b / "broker" / "agentbus-broker"
        self.trust_bin = b / "tools" / "agentbus-trust"
        self.key_bin = b / "tools" / "agentbus-key"
        self.dir = Path(tempfile.mkdtemp(prefix="agentbus-fed."))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.swtpms: List[Swtpm] = []
        self.procs: Dict[str, subprocess.Popen] = {}
        self.options = brokers
        self.stale_after_ms = stale_after_ms
        self.cluster: Optional[NatsCluster] = None
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")}
        try:
            self.agent_tpm = self._swtpm("agents")
            self._make_operator(REPO / "config" / "policy.toml")
            self.tpms = {name: self._swtpm(name) for name in brokers}
            self.fingerprints = {name: self._identity(name) for name in brokers}
            self.nkeys = {name: self._nkey(name) for name in brokers}
            self.cluster = NatsCluster(self.dir / "nats", {self.nkeys[n]: broker_permissions(n) for n in brokers},
                                       nodes=nats_nodes)
            for name in brokers:
                self._write_config(name)
            for name in brokers:
                self.start(name)
            for name in brokers:
                self.wait_federated(name)
        except BaseException:
            self.close()
            raise

    # ---- set-up ----
    def _swtpm(self, name: str) -> Swtpm:
        t = Swtpm(self.dir / "tpm" / name)
        self.swtpms.append(t)
        return t

    def run(self, *args, log: str = "tools.log", check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, env=self.env)
        with open(self.logs / log, "a") as f:
            f.write(f"$ {' '.join(map(str, args))}\n{r.stdout}{r.stderr}\n")
        if check and r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def _make_operator(self, policy: Path) -> None:
        self.operator_block = make_operator_key(self.key_bin, policy, self.dir / "operator",
                                                lambda *a: self.run(*a).stdout)
        self.policy = self.dir / "policy.toml"
        self.policy.write_text(policy.read_text() + self.operator_block)

    def policy_for(self, name: str) -> Path:
        custom = self.options[name].get("policy_text")
        if custom is None:
            return self.policy
        p = self.dir / f"policy-{name}.toml"
        p.write_text(custom + self.operator_block)
        return p

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.dir}/{name}/broker.sock"

    def admin(self, name: str) -> str:
        return f"ipc://{self.dir}/{name}/admin.sock"

    def _base_config(self, name: str) -> str:
        return broker_sections(self.dir, name, self.policy_for(name), f'tcti = "{self.tpms[name].tcti}"') + """
[logging]
format = "text"
level = "info"
"""

    def _identity(self, name: str) -> str:
        (self.dir / name).mkdir(exist_ok=True)
        cfg = self.dir / name / "identity.toml"
        cfg.write_text(self._base_config(name))
        out = self.run(self.broker_bin, "--config", cfg, "--print-identity").stdout
        return re.search(r"^([0-9a-f]{64})$", out, re.M).group(1)

    def _nkey(self, name: str) -> str:
        seed = self.dir / name / "nats.nk"
        return self.run(self.trust_bin, "nkey", "--out", seed).stdout.strip()

    def _write_config(self, name: str) -> None:
        brokers = "\n".join(f'{n} = "{fp}"' for n, fp in self.fingerprints.items())
        nodes = self.options[name].get("nats_nodes")  # only these nodes (a partition test pins brokers)
        servers = json.dumps([u for i, u in enumerate(self.cluster.urls) if nodes is None or i in nodes])
        (self.dir / name / "broker.toml").write_text(self._base_config(name) + f"""
[federation]
servers = {servers}
nkey_seed_file = "{self.dir}/{name}/nats.nk"
subject_prefix = "{PREFIX}"
bucket = "{BUCKET}"
replicas = {min(3, self.cluster.n)}
stale_after_ms = {self.stale_after_ms}

[federation.brokers]
{brokers}
""")

    # ---- brokers ----
    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "a")
        args = self.options[name].get("args", [])
        self.procs[name] = subprocess.Popen([str(self.broker_bin), "--config", str(self.dir / name / "broker.toml"), *args],
                                            stdout=log, stderr=subprocess.STDOUT, env=self.env)

        def ready() -> bool:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"broker {name} exited ({self.procs[name].returncode}): "
                                   f"{(self.logs / f'{name}.log').read_text()}")
            r = subprocess.run([str(self.trust_bin), "--admin", self.admin(name), "--timeout-ms", "500", "broker"],
                               capture_output=True, text=True)
            return r.returncode == 0

        wait_for(ready, 60, f"broker {name}'s admin endpoint", interval=0.1)

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def federation(self, name: str) -> dict:
        return json.loads(self.run(self.trust_bin, "--admin", self.admin(name), "federation", "--json").stdout)

    def wait_federated(self, name: str, timeout: float = 60) -> None:
        """Until `name` is connected and sees every other broker live."""
        def ok() -> bool:
            v = self.federation(name)
            return v.get("connected") and all(b["live"] for b in v["brokers"])
        wait_for(ok, timeout, f"broker {name} to see the whole federation live", interval=0.2)

    def where(self, broker: str, agent: str) -> Optional[dict]:
        for a in self.federation(broker)["agents"]:
            if a["name"] == agent:
                return a
        return None

    def bundle(self, name: str, role: str, broker: str) -> Path:
        out = self.dir / "bundles" / f"{name}.toml"
        out.parent.mkdir(mode=0o700, exist_ok=True)
        if out.exists():
            out.unlink()
        self.run(self.trust_bin, "--admin", self.admin(broker), "token", "create", name, "--role", role, "--endpoint",
                 self.endpoint(broker), "--ttl", "600", "--out", out, "--operator-key", self.dir / "operator",
                 "--operator", "test-operator")
        return out

    def revoke(self, broker: str, agent: str) -> None:
        self.run(self.trust_bin, "--admin", self.admin(broker), "revoke", agent, "--reason", "test",
                 "--operator-key", self.dir / "operator", "--operator", "test-operator")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def key_dir(self, name: str) -> Path:
        return self.dir / "keys" / name

    def close(self) -> None:
        for p in self.procs.values():
            stop_process(p)
        if self.cluster is not None:
            self.cluster.close()
        for t in self.swtpms:
            t.stop()
        if os.environ.get("AGENTBUS_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
