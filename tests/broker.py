"""A real mosquitto on 127.0.0.1 for the tests: start, stop, restart on the same port."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A client that reconnects again and again to a stopped server on 127.0.0.1 can be handed the
    server's own port as its ephemeral source port and connect to itself (TCP simultaneous open);
    it then holds the port and the server cannot come back. Ports outside the ephemeral range
    are never handed out that way.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10000, low)  # noqa: S311 - not crypto
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto); "
                           "the integration tests need a real broker")
    return found


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # noqa: test helper outside the event loop
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Mosquitto:
    def __init__(self, workdir: Path, extra_conf: str = "", *, persistent: bool = False) -> None:
        """`persistent`: sessions and queued messages survive a stop/start (a backend's view)."""
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.extra_conf = extra_conf
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # As root, mosquitto drops to the `mosquitto` user, which cannot read or write pytest's
        # 0700 folders: its persistence and ACL files would be silently missing.
        user = "user root\n" if os.geteuid() == 0 else ""
        persistence = (f"persistence true\npersistence_location {self.workdir}/\n"
                       if self.persistent else "persistence false\n")
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{persistence}{user}"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n{self.extra_conf}")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
