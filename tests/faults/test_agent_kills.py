"""The agent is killed with SIGKILL many times at random moments under load, with the broker up
(so publishes, PUBACKs and the batched deletes are all in flight when it dies)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from tests.faults.harness import (AgentProcess, assert_contiguous, config, deduplicated,
                                  devices, observing, persistent_broker)

KILLS = 15


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_at_random_moments_under_load(tmp_path: Path, building: tuple) -> None:
    """15 SIGKILLs at random moments (0.4-2.5 s after each start) while three devices are polled
    every 100 ms and the uplink drains. Proves: the database passes integrity_check after every
    kill; a row committed before a kill keeps its seq and mid; at the end every committed
    record has been delivered (after de-duplication on mid, one mid per seq) and the delivered
    seqs are contiguous from 1."""
    _, modbus_port = building
    rng = random.Random(1234)
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    path = config(tmp_path, broker, modbus_port, devices=devices("100ms", (1, 2, 3)))
    agent = AgentProcess(path, tmp_path / "agent.log")
    ever: dict[int, str] = {}  # every row seen committed in the file after a kill
    try:
        async with observing(broker.port) as observer:
            for _ in range(KILLS):
                await agent.start()
                await asyncio.sleep(rng.uniform(0.4, 2.5))
                await agent.kill()
                db = sqlite3.connect(tmp_path / "outbox.db")
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                rows = dict(db.execute("SELECT seq, mid FROM outbox"))
                db.close()
                for seq, mid in rows.items():
                    assert ever.setdefault(seq, mid) == mid, f"seq {seq} renumbered"
            await agent.start()
            await observer.wait_for(lambda ms: set(ever) <= set(deduplicated(observer)),
                                    timeout=60)
            await agent.stop()
    finally:
        broker.stop()
    delivered = deduplicated(observer)
    for seq, mid in ever.items():
        assert delivered[seq] == mid
    assert_contiguous(set(delivered))
    assert min(delivered) == 1 and len(delivered) > 200
