"""State files are owner-only whatever the umask: the outbox, its WAL and shared-memory files (the
command store, audit and replay records live in the same file), and a directory made for them."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from tests.broker import Mosquitto
from tests.faults.harness import AgentProcess, config, devices, observing


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.timeout(60)
async def test_outbox_wal_and_shm_are_0600_under_umask_022(tmp_path: Path, building: tuple,
                                                             broker: Mosquitto) -> None:
    _, modbus_port = building
    state = tmp_path / "state" / "lib"  # does not exist yet: the agent creates it
    path = config(tmp_path, broker, modbus_port, devices=devices("200ms", (1,)),
                  buffer={"path": str(state / "outbox.db")})
    previous = os.umask(0o022)  # the child inherits it
    try:
        async with (AgentProcess(path, tmp_path / "agent.log") as agent,
                    observing(broker.port) as observer):
            await agent.start()
            await observer.wait_for(lambda ms: any(m.topic.endswith("/tm") for m in ms), 20)
            files = {p.name: mode(p) for p in state.iterdir()}
            await agent.stop()
    finally:
        os.umask(previous)
    assert {"outbox.db", "outbox.db-wal", "outbox.db-shm"} <= set(files), files
    assert all(m == 0o600 for m in files.values()), {k: oct(v) for k, v in files.items()}
    assert mode(state) == 0o700


def test_an_old_world_readable_outbox_is_tightened(tmp_path: Path) -> None:
    from agent.sdk.durable import private_sqlite  # noqa: PLC0415

    db = tmp_path / "outbox.db"
    for name in ("outbox.db", "outbox.db-wal"):
        (tmp_path / name).write_bytes(b"")
        os.chmod(tmp_path / name, 0o644)
    private_sqlite(db)
    assert mode(db) == mode(tmp_path / "outbox.db-wal") == 0o600
