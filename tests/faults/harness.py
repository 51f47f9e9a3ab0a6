"""Fault-injection harness: a real agent process (`python -m agent run`), a persistent real
mosquitto that can be stopped and restarted on the same port, the simulated Modbus building in
this process, and an observer with a persistent session standing in for the backend."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agent.sim.modbus_building import DEMO_POINTS
from tests.broker import Mosquitto
from tests.integration.helpers import write_config
from tests.observer import Observer
from tests.observer import observing as observe

ROOT = "bgw/v1/site-a/gw-test"
RUN = [sys.executable, "-m", "agent", "run", "--config"]
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def persistent_broker(workdir: Path, extra: str = "") -> Mosquitto:
    workdir.mkdir(parents=True, exist_ok=True)
    return Mosquitto(workdir, extra_conf=extra, persistent=True)


def devices(poll: str = "200ms", units: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    names = {1: "vmc-a", 2: "pump-1", 3: "vmc-b"}
    return [{"id": names[u], "bus": "lan", "address": u, "poll": poll, "timeout": "300ms",
             "points": DEMO_POINTS[u]} for u in units]


def config(tmp_path: Path, broker: Mosquitto, modbus_port: int, *, buffer: dict[str, Any]
           | None = None, **extra: Any) -> Path:
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                        devices=extra.pop("devices", devices()), **extra)
    if buffer:
        import yaml  # noqa: PLC0415

        doc = yaml.safe_load(path.read_text())
        doc["buffer"].update(buffer)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class AgentProcess:
    """One `batigate run`; its stderr goes to a file the test can read."""

    def __init__(self, config_path: Path, log: Path) -> None:
        self.config_path = config_path
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(*RUN, str(self.config_path),
                                                             env=ENV, stderr=err)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 20)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def __aenter__(self) -> AgentProcess:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Whatever the test did or how it failed, no agent outlives it.
        if self.alive:
            await self.kill()


def observing(port: int, client_id: str = "fault-observer") -> Any:
    return observe(port, f"{ROOT}/#", client_id=client_id)


def outbox_messages(observer: Observer) -> list[dict[str, Any]]:
    """Everything that went through the outbox (it has a seq), duplicates included."""
    return [m.body for m in observer.messages if "seq" in m.body and "mid" in m.body]


def deduplicated(observer: Observer) -> dict[int, str]:
    """seq -> mid as a backend would keep them; a seq seen with two mids fails the test."""
    out: dict[int, str] = {}
    for body in outbox_messages(observer):
        seen = out.setdefault(body["seq"], body["mid"])
        assert seen == body["mid"], f"seq {body['seq']} published with two mids"
    return out


def assert_contiguous(seqs: set[int], start: int = 1) -> None:
    missing = sorted(set(range(start, max(seqs) + 1)) - seqs)
    assert not missing, f"{len(missing)} seqs missing, first {missing[:10]}"


def assert_lanes_in_order(observer: Observer) -> None:
    """Within each lane (alarms/events, backlog telemetry, live telemetry) and each connection
    the first deliveries come in seq order; re-sends after a reconnect may repeat a suffix."""
    for hist in (True, False):
        firsts: list[int] = []
        seen: set[int] = set()
        for body in outbox_messages(observer):
            if "e" in body and body["hist"] is hist and body["seq"] not in seen:
                seen.add(body["seq"])
                firsts.append(body["seq"])
        assert firsts == sorted(firsts), f"telemetry (hist={hist}) out of order"
