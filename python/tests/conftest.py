"""pytest fixtures: a real bus (swtpm + broker) per test module, and agents on it."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import Bus, build_dir  # noqa: E402

# The module under test is the one this build made.
sys.path.insert(0, str(build_dir() / "python"))
import agentbus  # noqa: E402


@pytest.fixture(scope="module")
def bus() -> Iterator[Bus]:
    b = Bus()
    yield b
    gc.collect()  # identities hold their TPM connection: release them before swtpm stops
    b.close()


@pytest.fixture(scope="module")
def agent_tpm(bus: Bus) -> Iterator["agentbus.Tpm"]:
    t = agentbus.Tpm(bus.agent_tpm.tcti)
    yield t
    # Identities share the connection: let them all go while the swtpm still runs.
    del t
    gc.collect()


@pytest.fixture
def make_agent(bus: Bus, agent_tpm):
    """make_agent(name, role, **kwargs): a TPM identity, a bundle and an enrolled Agent,
    closed after the test."""
    made = []

    def make(name: str, role: str, **kwargs):
        key = agentbus.open_or_create_identity(bus.key_dir(name), role, tpm=agent_tpm)
        a = agentbus.Agent(identity=key, bundle=bus.bundle(name, role), **kwargs)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()
