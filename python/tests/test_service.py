"""The broker as a systemd service sees it (Type=notify, WatchdogSec=): READY=1 once it
serves, WATCHDOG=1 from its event loop at half the interval, STOPPING=1 on SIGTERM.
systemd's side is played by a datagram socket at $NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
import time

from harness import Bus


def receive(sock: socket.socket, until: float) -> list:
    got = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            break
    return got


def test_ready_watchdog_and_stopping_reach_systemd(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    # 400 ms: the broker pings every 200 ms or so, from its loop (which turns every <= 100 ms).
    bus = Bus(broker_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        messages = receive(sock, time.monotonic() + 2.0)
        ready = [m for m in messages if "READY=1" in m]
        assert ready, messages
        assert "STATUS=serving 1 endpoint(s), identity " in ready[0]
        # The watchdog keeps being pinged while the broker runs.
        pings = [m for m in messages if m == "WATCHDOG=1"]
        assert len(pings) >= 3, messages
        bus.broker.send_signal(signal.SIGTERM)
        bus.broker.wait(10)
        after = receive(sock, time.monotonic() + 0.5)
        assert any(m.startswith("STOPPING=1") for m in messages + after), messages + after
        assert bus.broker.returncode == 0
    finally:
        bus.close()
        sock.close()


def test_without_notify_socket_nothing_is_required(tmp_path):
    bus = Bus()  # no $NOTIFY_SOCKET: sd_notify does nothing, the broker serves as before
    try:
        assert bus.broker.poll() is None
        assert "systemd watchdog" not in bus.broker_log.read_text()
    finally:
        bus.close()
