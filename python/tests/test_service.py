"""The broker as a systemd service sees it (Type=notify, WatchdogSec=): READY=1 once it
serves, WATCHDOG=1 from its event loop at half the interval, STOPPING=1 on SIGTERM.
systemd's side is played by a datagram socket at $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

from harness import Bus


class Listener:
    """systemd's side: reads every datagram as it arrives (a reader that falls behind
    would fill the socket's queue), each with the time it came."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except socket.timeout:
                continue

    def texts(self) -> list:
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_ready_watchdog_and_stopping_reach_systemd(tmp_path):
    listener = Listener(str(tmp_path / "notify.sock"))
    # 400 ms: pinged about every 200 ms while the event loop turns (at least every 100 ms).
    bus = Bus(broker_env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"})
    try:
        time.sleep(2.0)
        texts = listener.texts()
        ready = [m for m in texts if "READY=1" in m]
        assert len(ready) == 1, texts
        assert "STATUS=serving 1 endpoint(s), identity " in ready[0]
        assert texts.index(ready[0]) == 0, texts  # nothing before READY
        pings = [t for t, m in listener.messages if m == "WATCHDOG=1"]
        # About 10 in 2 s after READY (the harness's own wait adds more): never a flood,
        # never none. The bounds are counts, not times.
        assert len(pings) >= 5, texts
        assert len(pings) <= 200, len(pings)
        bus.broker.send_signal(signal.SIGTERM)
        bus.broker.wait(10)
        time.sleep(0.3)
        assert listener.texts()[-1].startswith("STOPPING=1"), listener.texts()[-3:]
        assert bus.broker.returncode == 0
    finally:
        bus.close()
        listener.close()


def test_a_watchdog_meant_for_another_process_is_not_pinged(tmp_path):
    listener = Listener(str(tmp_path / "notify.sock"))
    # WATCHDOG_PID names the process the watchdog is for; here, not the broker.
    bus = Bus(broker_env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000",
                          "WATCHDOG_PID": str(os.getpid())})
    try:
        time.sleep(1.0)
        texts = listener.texts()
        assert any("READY=1" in m for m in texts), texts
        assert "WATCHDOG=1" not in texts, texts
    finally:
        bus.close()
        listener.close()


def test_without_notify_socket_nothing_is_required(tmp_path):
    bus = Bus()  # no $NOTIFY_SOCKET: sd_notify does nothing, the broker serves as before
    try:
        assert bus.broker.poll() is None
        assert "systemd watchdog" not in bus.broker_log.read_text()
    finally:
        bus.close()
