"""1,100 idle local clients on the control socket of a real agent whose descriptor limit is
lowered to 256: the agent refuses the clients over its cap (counted), disconnects the idle ones,
keeps publishing health and answers `status` again afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from pathlib import Path

import pytest

from agent.runtime import control
from tests.broker import Mosquitto
from tests.faults.harness import ENV, ROOT, RUN, AgentProcess, config, devices, observing
from tests.integration.test_schemas import assert_valid
from tests.security.procmem import open_fds

CLIENTS = 1100
FD_LIMIT = 256


def lowered_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def connect_idle(path: Path, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(True)  # waits for room in the listen backlog (the test has a timeout)
        sock.connect(str(path))
        out.append(sock)
    return out


def send_oversized_line(path: Path) -> bool:
    """True when the agent closes a connection that sends more than MAX_LINE without a newline."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        try:
            sock.sendall(b"x" * (control.MAX_LINE + 4096))
            return sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


@pytest.mark.timeout(120)
async def test_idle_clients_cannot_exhaust_the_descriptors(tmp_path: Path, building: tuple,
                                                           broker: Mosquitto) -> None:
    _, modbus_port = building
    path = config(tmp_path, broker, modbus_port, devices=devices("500ms", (1,)),
                  health={"interval": "500ms"},
                  control={"socket": str(tmp_path / "control.sock"), "idle_timeout": "3s"})
    sock_path = tmp_path / "control.sock"
    idle: list[socket.socket] = []
    try:
        async with (AgentProcess(path, tmp_path / "agent.log") as agent,
                    observing(broker.port, client_id="ctl-observer") as observer):
            with agent.log.open("ab") as log:
                agent.proc = await asyncio.create_subprocess_exec(
                    *RUN, str(path), env=ENV, stderr=log, preexec_fn=lowered_fd_limit)
            await observer.wait_for(lambda ms: any(m.topic.endswith("/health") for m in ms), 20)
            idle = await asyncio.to_thread(connect_idle, sock_path, CLIENTS)
            peak_fds = open_fds(agent.proc.pid)
            seen = len(observer.messages)
            await observer.wait_for(lambda ms: sum(
                m.topic.endswith("/health") for m in ms[seen:]) >= 2, 10)
            health = [m.body for m in observer.messages if m.topic == f"{ROOT}/health"][-1]
            # the idle ones are disconnected after idle_timeout: status answers again
            await asyncio.sleep(3.5)
            answer = await control.request(sock_path, "status", timeout=10)
            # one request line over the limit: that client is dropped, the next is served
            dropped = await asyncio.to_thread(send_oversized_line, sock_path)
            again = await control.request(sock_path, "status", timeout=10)
            assert agent.alive
            assert await agent.stop() == 0
    finally:
        for sock in idle:
            sock.close()
    assert_valid("health.json", health)
    stats = health["control"]
    # every client was served (never more than the cap at once), refused or disconnected when idle
    assert stats["clients"] <= 16 and stats["refused"] >= CLIENTS / 2, stats
    assert stats["refused"] + stats["idle_closed"] + stats["clients"] >= CLIENTS, stats
    assert peak_fds < FD_LIMIT / 2, peak_fds
    assert answer["status"] == "succeeded", answer
    assert dropped and again["status"] == "succeeded"
    log_text = agent.log.read_text()
    assert "Too many open files" not in log_text


def test_the_client_cap_follows_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
        assert control.client_cap(16) == 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with contextlib.suppress(ValueError):
        assert control.client_cap(16) == 16
