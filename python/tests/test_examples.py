"""The README's two "Write an agent" programs are the files the tests run, and the
Python one works against a broker (the C++ one runs in test_installed.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import agentbus
from harness import REPO, build_dir


def readme_block(path: str) -> str:
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- " + re.escape(path) + r" -->\n```[a-z]*\n(.*?)```", readme, re.S)
    assert m, f"README.md has no block for {path}"
    return m.group(1)


def test_the_readme_shows_the_files_the_tests_run():
    for path in ("examples/external/agent.cpp", "examples/python/hello.py"):
        assert readme_block(path) == (REPO / path).read_text(), path
        assert len(readme_block(path).splitlines()) <= 13, f"{path} is meant to be about ten lines"


def test_the_python_example_runs_against_a_broker(bus, agent_tpm, tmp_path):
    follower_key = agentbus.open_or_create_identity(bus.key_dir("hello-follower"), "OPTIMIZER", tpm=agent_tpm)
    arrived = threading.Event()
    got = []
    with agentbus.Agent(identity=follower_key, bundle=bus.bundle("hello-follower", "OPTIMIZER")) as follower:
        follower.subscribe("metrics/cpu", lambda m: (got.append(m), arrived.set()))
        hello_tpm = bus.swtpm("hello")  # its own process, so its own TPM
        env = {**os.environ, "PYTHONPATH": str(build_dir() / "python")}
        r = subprocess.run([sys.executable, str(REPO / "examples/python/hello.py"), str(tmp_path / "key"),
                            str(bus.bundle("hello-1", "MONITOR")), hello_tpm.tcti],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "hello-1 published metrics/cpu; sent" in r.stdout
        assert arrived.wait(15)
    assert (got[0].sender, got[0].payload, got[0].content_type) == ("hello-1", b'{"cpu": 0.42}', "application/json")
