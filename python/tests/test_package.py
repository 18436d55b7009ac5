"""The Debian package: CPack builds it from this build; its contents, control fields
and conffiles are what docs/install.md says; extracted into a temporary root
(dpkg -x), its broker starts with the shipped configuration and its Python module
enrols an agent (examples/python/hello.py) through that broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import REPO, Bus, build_dir


@pytest.fixture(scope="module")
def deb():
    out = Path(tempfile.mkdtemp(prefix="agentbus-deb."))
    subprocess.run(["cpack", "-G", "DEB", "--config", str(build_dir() / "CPackConfig.cmake"), "-B", str(out)],
                   check=True, stdout=subprocess.DEVNULL, cwd=out)
    debs = list(out.glob("agentbus_*.deb"))
    assert len(debs) == 1, debs
    yield debs[0]
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def root(deb):
    d = Path(tempfile.mkdtemp(prefix="agentbus-deb-root."))
    subprocess.run(["dpkg", "-x", str(deb), str(d)], check=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


EXPECTED = {
    "./etc/agentbus/broker.toml", "./etc/agentbus/policy.toml",
    "./usr/bin/agentbus-broker", "./usr/bin/agentbus-key", "./usr/bin/agentbus-trust",
    "./usr/lib/systemd/system/agentbus-broker.service",
    "./usr/lib/x86_64-linux-gnu/libagentbus.so", "./usr/lib/x86_64-linux-gnu/libagentbus.so.0.1",
    "./usr/lib/x86_64-linux-gnu/libagentbus.so.0.1.0",
    "./usr/lib/x86_64-linux-gnu/pkgconfig/agentbus.pc",
    "./usr/lib/x86_64-linux-gnu/cmake/agentbus/agentbusConfig.cmake",
    "./usr/lib/x86_64-linux-gnu/cmake/agentbus/agentbusConfigVersion.cmake",
    "./usr/lib/x86_64-linux-gnu/cmake/agentbus/agentbus-targets.cmake",
    "./usr/lib/python3/dist-packages/agentbus/__init__.py",
    "./usr/lib/python3/dist-packages/agentbus/aio.py",
    "./usr/lib/python3/dist-packages/agentbus/_agentbus.pyi",
    "./usr/lib/python3/dist-packages/agentbus/py.typed",
    "./usr/include/agentbus/agent.hpp", "./usr/include/agentbus/version.hpp",
}


def test_contents_control_and_conffiles(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in listing.splitlines():
        parts = line.split()
        entries[parts[5]] = parts[0]
    files = set(entries)
    missing = EXPECTED - files
    assert not missing, f"missing from the package: {sorted(missing)}"
    assert any(f.startswith("./usr/lib/python3/dist-packages/agentbus/_agentbus.") and f.endswith(".so") for f in files)
    # Nothing of the build tree's own: tests, examples, the demo, the static library.
    for f in files:
        assert not f.endswith(".a") and not any(x in f for x in ("test", "example", "agentbus-demo", "swtpm")), f
    assert "./usr/bin/agentbus-bench" not in files
    for tool in ("agentbus-broker", "agentbus-key", "agentbus-trust"):
        assert entries[f"./usr/bin/{tool}"] == "-rwxr-xr-x", tool
    assert entries["./etc/agentbus/broker.toml"] == "-rw-r--r--"

    assert field(deb, "Package") == "agentbus"
    version = (REPO / "CMakeLists.txt").read_text().split("project(agentbus VERSION ", 1)[1].split()[0]
    assert field(deb, "Version") == version
    depends = field(deb, "Depends")
    for dep in ("adduser", "python3", "libtss2-esys", "libzmq5", "libssl3"):
        assert dep in depends, dep
    with tempfile.TemporaryDirectory() as control:
        subprocess.run(["dpkg-deb", "-e", str(deb), control], check=True)
        conffiles = Path(control, "conffiles").read_text().split()
        assert conffiles == ["/etc/agentbus/broker.toml", "/etc/agentbus/policy.toml"]
        postinst = Path(control, "postinst")
        assert os.access(postinst, os.X_OK) and "adduser --system" in postinst.read_text()
        assert "try-restart agentbus-broker.service" in postinst.read_text()
        assert "stop agentbus-broker.service" in Path(control, "prerm").read_text()
        assert os.access(Path(control, "prerm"), os.X_OK) and os.access(Path(control, "postrm"), os.X_OK)
        assert Path(control, "triggers").read_text().split() == ["activate-noawait", "ldconfig"]
        # Packages that link libagentbus get a dependency on exactly this version (0.x).
        assert Path(control, "shlibs").read_text().split() == ["libagentbus", "0.1", "agentbus", "(=", f"{version})"]
        for script in ("postinst", "prerm", "postrm"):
            subprocess.run(["sh", "-n", str(Path(control, script))], check=True)


def test_the_unit_and_config_name_the_installed_paths(root):
    unit = (root / "usr/lib/systemd/system/agentbus-broker.service").read_text()
    assert "ExecStart=/usr/bin/agentbus-broker --config /etc/agentbus/broker.toml" in unit
    config = (root / "etc/agentbus/broker.toml").read_text()
    assert 'policy = "/etc/agentbus/policy.toml"' in config
    assert (root / "etc/agentbus/policy.toml").read_text() == (REPO / "config/policy.toml").read_text()


def test_the_packaged_broker_starts_with_the_shipped_config_and_the_module_enrols(root, tmp_path):
    # The shipped config as it is; only what names this host's paths and TPM is
    # overridden on the command line (state and key dirs, TPM, policy with a test
    # operator, endpoints).
    bus = Bus(bin_dir=root / "usr/bin", broker_config=root / "etc/agentbus/broker.toml",
              policy=root / "etc/agentbus/policy.toml")
    try:
        assert '"level":' in bus.broker_log.read_text()  # [logging] format = "json", as shipped
        site = root / "usr/lib/python3/dist-packages"
        env = {**os.environ, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu")}
        hello_tpm = bus.swtpm("hello")
        r = subprocess.run([sys.executable, str(REPO / "examples/python/hello.py"), str(tmp_path / "key"),
                            str(bus.bundle("hello-deb", "MONITOR")), hello_tpm.tcti],
                           env=env, capture_output=True, text=True, timeout=60, cwd="/")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "hello-deb published metrics/cpu; sent" in r.stdout
        shown = subprocess.run([str(bus.trust_bin), "--admin", bus.admin, "show", "hello-deb"], capture_output=True,
                               text=True, env=env)
        assert shown.returncode == 0 and "MONITOR" in shown.stdout
    finally:
        bus.close()
