"""The broker goes away: for minutes while the agent polls, or again and again. Real mosquitto
(persistent, so the observer's session keeps what arrives while it reconnects), a real agent
process, the simulated Modbus building."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from pathlib import Path

import pytest

from tests.faults.harness import (AgentProcess, assert_contiguous, assert_lanes_in_order,
                                  config, deduplicated, devices, observing,
                                  persistent_broker)

# `make soak` sets this to 600 (ten minutes); `make test` keeps the suite short.
OUTAGE = float(os.environ.get("BATIGATE_OUTAGE_S", "75"))


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE + 180)
async def test_broker_down_for_minutes_loses_nothing(tmp_path: Path, building: tuple) -> None:
    """The broker is down for OUTAGE seconds (75 in `make test`, 600 in `make soak`) while two
    devices are polled every 200 ms. Proves: nothing is lost (the delivered seqs are contiguous
    from 1), nothing acknowledged before the outage is sent again, every held message says
    hist: true, live telemetry keeps flowing while the paced backlog drains, and both lanes
    arrive in seq order."""
    _, modbus_port = building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    path = config(tmp_path, broker, modbus_port,
                  buffer={"backlog_rate": 100, "backlog_burst": 50})
    agent = AgentProcess(path, tmp_path / "agent.log")
    try:
        async with observing(broker.port) as observer:
            await agent.start()
            await observer.wait_for(lambda ms: len(deduplicated(observer)) >= 10)
            before = set(deduplicated(observer))
            broker.stop()
            await asyncio.sleep(OUTAGE)
            db = sqlite3.connect(tmp_path / "outbox.db")
            held = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            db.close()
            assert held >= OUTAGE * 5, held  # ~10 polls/s happened, all kept (commits batched)
            broker.start()
            def drained(_: object) -> bool:
                seqs = set(deduplicated(observer))
                top = max(seqs)
                return top > max(before) + held and len(seqs) == top  # contiguous from 1

            await observer.wait_for(drained, timeout=120)
            assert agent.alive
    finally:
        await agent.stop() if agent.proc else None
        broker.stop()
    delivered = deduplicated(observer)
    assert_contiguous(set(delivered))
    assert_lanes_in_order(observer)
    counts: dict[int, int] = {}
    for m in observer.messages:
        if "seq" in m.body:
            counts[m.body["seq"]] = counts.get(m.body["seq"], 0) + 1
    resent_before = [s for s in before if counts[s] > 1]
    assert len(resent_before) <= 32, "acknowledged messages were sent again"  # one window
    hist = [m.body for m in observer.messages if m.body.get("hist")]
    assert len({b["seq"] for b in hist}) >= held * 0.95


@pytest.mark.slow
async def test_broker_restarting_again_and_again(tmp_path: Path, building: tuple) -> None:
    """The broker is stopped and restarted 8 times at random moments (0.5-3 s up, 0.3-2 s down)
    while three devices are polled every 100 ms. Proves: once it stays up, every message the
    agent committed arrives, each seq with one mid (duplicates allowed, de-duplicated on mid),
    the seqs are contiguous, lanes in order, and the agent never exits."""
    _, modbus_port = building
    rng = random.Random(5)
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    path = config(tmp_path, broker, modbus_port,
                  devices=devices("100ms", (1, 2, 3)))
    agent = AgentProcess(path, tmp_path / "agent.log")
    try:
        async with observing(broker.port) as observer:
            await agent.start()
            await observer.wait_for(lambda ms: len(deduplicated(observer)) >= 5)
            for _ in range(8):
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                # SIGTERM: the agent's connection drops with publishes in flight. (A SIGKILL of
                # mosquitto loses messages it had already PUBACKed, since it saves its store
                # only at shutdown: a broker's durability limit, not something the agent can fix.)
                broker.stop()
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                broker.start()
                assert agent.alive
            await asyncio.sleep(3)
            code = await agent.stop()
            assert code == 0
            db = sqlite3.connect(tmp_path / "outbox.db")
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            left = dict(db.execute("SELECT seq, mid FROM outbox"))
            db.close()
            committed_last = max(left) if left else None
            await observer.wait_for(
                lambda ms: committed_last is None
                or max(deduplicated(observer)) >= committed_last - len(left), timeout=20)
    finally:
        broker.stop()
    delivered = deduplicated(observer)
    # what the clean stop could not drain stays in the outbox for the next start: together with
    # what was delivered, nothing is missing
    everything = set(delivered) | set(left)
    assert_contiguous(everything)
    for seq, mid in left.items():
        assert delivered.get(seq, mid) == mid
    assert_lanes_in_order(observer)
    assert len(delivered) > 100
