"""The installed tree, as an agent author outside this project uses it: `cmake
--install` into a temporary root, the headers compiled with nothing but the library
(pkg-config), examples/external configured with find_package(agentbus) and run
against a broker, the installed Python module imported from that root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from harness import REPO, build_dir

import agentbus


@pytest.fixture(scope="module")
def root():
    d = Path(tempfile.mkdtemp(prefix="agentbus-install."))
    subprocess.run(["cmake", "--install", str(build_dir())], check=True, env={**os.environ, "DESTDIR": str(d)},
                   stdout=subprocess.DEVNULL)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def prefix_of(root: Path) -> Path:
    # The build's prefix (scripts/build.sh: /usr) under the DESTDIR.
    cache = (build_dir() / "CMakeCache.txt").read_text()
    prefix = next(line.split("=", 1)[1] for line in cache.splitlines() if line.startswith("CMAKE_INSTALL_PREFIX:"))
    return root / prefix.lstrip("/")


def libdir_of(prefix: Path) -> Path:
    return next(p.parent for p in prefix.glob("lib*/**/libagentbus.so"))


def test_the_tree_holds_library_headers_package_tools_unit_config_and_module(root):
    prefix = prefix_of(root)
    libdir = libdir_of(prefix)
    so = libdir / "libagentbus.so"
    assert so.is_symlink() and os.readlink(so) == "libagentbus.so.0.1"
    assert (libdir / "libagentbus.so.0.1").is_symlink() and (libdir / "libagentbus.so.0.1.0").is_file()
    soname = subprocess.run(["objdump", "-p", str(libdir / "libagentbus.so.0.1.0")], capture_output=True, text=True).stdout
    assert "SONAME               libagentbus.so.0.1" in soname
    for h in ["agent.hpp", "identity.hpp", "policy.hpp", "status.hpp", "tpm.hpp", "version.hpp", "library.hpp"]:
        assert (prefix / "include" / "agentbus" / h).is_file(), h
    assert not list((prefix / "include").rglob("*.cpp"))
    assert (libdir / "cmake" / "agentbus" / "agentbusConfig.cmake").is_file()
    assert (libdir / "pkgconfig" / "agentbus.pc").is_file()
    for tool in ["agentbus-broker", "agentbus-key", "agentbus-trust"]:
        assert os.access(prefix / "bin" / tool, os.X_OK), tool
    assert not (prefix / "bin" / "agentbus-bench").exists()  # it needs the build tree (swtpm, examples)
    # The unit names the installed broker and a configuration that is installed, whose
    # policy is installed too (all under the staging root).
    unit = (prefix / "lib" / "systemd" / "system" / "agentbus-broker.service").read_text()
    m = re.search(r"^ExecStart=(\S+) --config (\S+)$", unit, re.M)
    assert m, unit
    broker, config = (root / m.group(1).lstrip("/")), (root / m.group(2).lstrip("/"))
    assert broker == prefix / "bin" / "agentbus-broker" and config.is_file()
    policy = re.search(r'^policy = "(.*)"$', config.read_text(), re.M).group(1)
    assert (root / policy.lstrip("/")).is_file(), policy
    assert list(prefix.glob("lib/python3*/*-packages/agentbus/_agentbus*.so"))
    # Only the public API leaves the library: none of its internal namespaces.
    syms = subprocess.run(["nm", "-DC", "--defined-only", str(libdir / "libagentbus.so.0.1.0")], capture_output=True,
                          text=True, check=True).stdout
    assert "agentbus::agent::publish" in syms and "typeinfo for agentbus::enrolment_error" in syms
    for internal in ["agentbus::client::", "agentbus::session::", "agentbus::net::"]:
        assert internal not in syms, internal


def test_installing_under_another_prefix_is_refused(tmp_path):
    r = subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", str(tmp_path / "elsewhere")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "DESTDIR" in r.stdout + r.stderr
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").rglob("*.so*"))


# What the public headers must not pull in: the libraries agentbus hides.
PRIVATE_HEADER_DIRS = ("openssl/", "tss2/", "zmq.h", "zmq.hpp", "spdlog/", "fmt/", "msgpack", "toml++/",
                       "nlohmann/", "sqlite3.h", "CLI/")


def test_the_headers_need_nothing_but_the_library(root, tmp_path):
    prefix = prefix_of(root)
    libdir = libdir_of(prefix)
    # A staged tree: pkg-config puts the staging root before the paths the file names.
    env = {**os.environ, "PKG_CONFIG_PATH": str(libdir / "pkgconfig"), "PKG_CONFIG_SYSROOT_DIR": str(root)}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "agentbus"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert f"-I{prefix / 'include'}" in flags
    src = tmp_path / "all_headers.cpp"
    headers = sorted(p.name for p in (prefix / "include" / "agentbus").glob("*.hpp"))
    # Every header, and the library's exceptions caught across the library boundary.
    src.write_text("".join(f"#include <agentbus/{h}>\n" for h in headers) + """
int main() {
  if (agentbus::library_version() != AGENTBUS_VERSION) return 2;
  try {
    agentbus::identity_key::open("/nonexistent/agentbus-key-dir", nullptr);
  } catch (const agentbus::identity_error&) {
    try {
      agentbus::policy::parse("[roles.X]\\nsuite = 3\\n", "bad.toml");
    } catch (const agentbus::policy_error& e) {
      return e.file() == "bad.toml" ? 0 : 3;
    }
  }
  return 1;
}
""")
    # Which files the compilation reads: none of the libraries agentbus keeps private.
    deps = subprocess.run(["g++", "-std=c++20", "-M", str(src), *[f for f in flags if f.startswith("-I")]],
                          capture_output=True, text=True, check=True).stdout
    leaked = [d for d in deps.replace("\\\n", " ").split() if any(p in d for p in PRIVATE_HEADER_DIRS)]
    assert leaked == [], leaked
    subprocess.run(["g++", "-std=c++20", "-Wall", "-Werror", str(src), "-o", str(tmp_path / "a.out"), *flags],
                   check=True)
    r = subprocess.run([str(tmp_path / "a.out")], env={**os.environ, "LD_LIBRARY_PATH": str(libdir)})
    assert r.returncode == 0


def test_an_out_of_tree_agent_builds_with_find_package_and_runs_against_a_broker(root, bus, agent_tpm, tmp_path):
    prefix = prefix_of(root)
    build = tmp_path / "external"
    subprocess.run(["cmake", "-S", str(REPO / "examples" / "external"), "-B", str(build),
                    f"-DCMAKE_PREFIX_PATH={prefix}"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build)], check=True, stdout=subprocess.DEVNULL)
    publisher = build / "publisher"
    needed = subprocess.run(["objdump", "-p", str(publisher)], capture_output=True, text=True).stdout
    assert "NEEDED               libagentbus.so.0.1" in needed

    # A Python OPTIMIZER follows metrics/cpu; the C++ MONITOR's key is made by the
    # installed agentbus-key in a TPM of its own (a process of its own: swtpm has no
    # resource manager between processes).
    publisher_tpm = bus.swtpm("ext-publisher")
    follower_key = agentbus.open_or_create_identity(bus.key_dir("ext-follower"), "OPTIMIZER", tpm=agent_tpm)
    got = []
    arrived = threading.Event()
    with agentbus.Agent(identity=follower_key, bundle=bus.bundle("ext-follower", "OPTIMIZER")) as follower:
        follower.subscribe("metrics/cpu", lambda m: (got.append(m), arrived.set()))
        key_dir = bus.key_dir("ext-publisher")
        subprocess.run([str(prefix / "bin" / "agentbus-key"), "create", "--role", "MONITOR", "--dir", str(key_dir),
                        "--tcti", publisher_tpm.tcti, "--require-tpm"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "LD_LIBRARY_PATH": str(libdir_of(prefix))})
        r = subprocess.run([str(publisher), str(key_dir), str(bus.bundle("ext-publisher", "MONITOR")),
                            publisher_tpm.tcti], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "LD_LIBRARY_PATH": str(libdir_of(prefix))})
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ext-publisher published metrics/cpu: ok" in r.stdout
        assert arrived.wait(15), "the out-of-tree agent's envelope did not arrive"
    m = got[0]
    assert (m.sender, m.sender_role, m.payload, m.assurance) == ("ext-publisher", "MONITOR", b'{"cpu":0.42}', "tpm")


def test_the_installed_python_module_imports_from_the_tree(root):
    prefix = prefix_of(root)
    site = next(prefix.glob("lib/python3*/*-packages"))
    env = {**os.environ, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(libdir_of(prefix))}
    code = ("import agentbus, os; print(agentbus.__version__); "
            "print(os.path.dirname(agentbus.__file__)); print(agentbus.Policy.default().roles[0])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd="/").stdout.split()
    assert out[0] == agentbus.__version__
    assert out[1] == str(site / "agentbus")
    assert out[2] == "ARCHITECT"
