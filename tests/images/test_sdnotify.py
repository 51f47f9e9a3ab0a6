"""sd_notify against a real unix datagram socket, as systemd's manager listens on."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runtime import sdnotify
from agent.runtime.sdnotify import Notifier


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_and_status_reach_the_socket(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname()})
    assert notifier.ready("running: 3 devices")
    assert notifier.status("draining")
    assert received(manager) == ["READY=1\nSTATUS=running: 3 devices", "STATUS=draining"]


def test_abstract_socket_name_gets_the_leading_nul() -> None:
    name = f"batigate-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send(watchdog=1)
        assert sock.recv(100) == b"WATCHDOG=1"


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False


@pytest.mark.parametrize(("env", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env).watchdog_interval == expected


async def test_watchdog_is_fed_at_half_the_interval(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname(), "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(notifier.feed_watchdog())
    await asyncio.sleep(0.45)  # pings at 0, 0.1, 0.2, 0.3, 0.4
    task.cancel()
    pings = received(manager)
    assert set(pings) == {"WATCHDOG=1"}
    assert 4 <= len(pings) <= 6


async def test_module_helpers_read_the_process_environment(
        manager: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", manager.getsockname())
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.ready("up")
    await asyncio.wait_for(sdnotify.watchdog(), 1)  # no WatchdogSec=: returns at once
    assert received(manager) == ["READY=1\nSTATUS=up"]
