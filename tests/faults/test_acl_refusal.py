"""A broker that refuses the gateway's publishes: mosquitto 2.0 with an `acl_file` that denies
the data topics. With MQTT 5 it answers each denied QoS 1 publish with PUBACK reason 0x87 (Not
authorized); aiomqtt 2.5 completes such a publish as if it succeeded, so only the agent's own
check keeps the message in the outbox."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.faults.harness import (ROOT, AgentProcess, assert_contiguous, config, deduplicated,
                                  observing, persistent_broker)

DENY_DATA = f"""topic readwrite {ROOT}/state
topic readwrite {ROOT}/birth
topic write {ROOT}/health
topic read bgw/v1/#
"""
ALLOW_ALL = "topic readwrite #\n"


def rows(db_path: Path) -> list[int]:
    db = sqlite3.connect(db_path)
    try:
        return [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_refused_publishes_never_leave_the_outbox(tmp_path: Path, building: tuple) -> None:
    """Proves, against a real mosquitto 2.0.11: the refusal really is PUBACK 0x87 (the agent's
    log names it); while refused, nothing of the data topics reaches a subscriber, the outbox
    keeps every row from seq 1 and keeps growing, and health counts the refusals; once the ACL
    allows the topics (SIGHUP reload), everything arrives, contiguous from seq 1, each seq with its stored mid."""
    _, modbus_port = building
    acl = tmp_path / "acl"
    acl.write_text(DENY_DATA)
    broker = persistent_broker(tmp_path / "broker", f"acl_file {acl}\n")
    broker.start()
    path = config(tmp_path, broker, modbus_port, health={"interval": "300ms"})
    agent = AgentProcess(path, tmp_path / "agent.log")
    try:
        async with observing(broker.port) as observer:
            await agent.start()
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/health") and m.body["mqtt"]["refused"] >= 3 for m in ms),
                timeout=20)
            await asyncio.sleep(3)
            kept = rows(tmp_path / "outbox.db")
            assert kept[0] == 1 and kept == list(range(1, kept[-1] + 1)) and len(kept) >= 10
            assert deduplicated(observer) == {}, "a refused message reached the subscriber"
            assert not [m for m in observer.messages if "/dev/" in m.topic or
                        m.topic.endswith("/evt")]
            log = (tmp_path / "agent.log").read_text()
            assert "(0x87)" in log and "Not authorized" in log, log[-2000:]
            stored = dict(sqlite3.connect(tmp_path / "outbox.db").execute(
                "SELECT seq, mid FROM outbox"))
            acl.write_text(ALLOW_ALL)
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)  # mosquitto 2.0 re-reads acl_file on SIGHUP
            await observer.wait_for(lambda ms: set(stored) <= set(deduplicated(observer)),
                                    timeout=30)
    finally:
        if agent.alive:
            await agent.stop()
        broker.stop()
    delivered = deduplicated(observer)
    for seq, mid in stored.items():
        assert delivered[seq] == mid
    assert_contiguous(set(delivered))
