"""A disk that really fills up: the outbox lives on a tmpfs mounted with a size limit, so SQLite
gets ENOSPC (SQLITE_FULL) from the kernel, not from a mock. Needs root (CI runs as root); if the
mount fails the test fails, it is never skipped."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.store.outbox import PRIO_ALARM, PRIO_EVENT, PRIO_TELEMETRY, Outbox
from tests.faults.harness import (AgentProcess, config, deduplicated, observing, outbox_messages,
                                  persistent_broker)


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the disk-full tests need root): {done.stderr}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the kernel says ENOSPC."""
    filler = disk / "filler"
    out = filler.open("wb", buffering=0)
    try:
        while True:
            out.write(b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        out.close()
    return filler


def test_outbox_survives_enospc_holds_in_memory_and_resumes(tmp_path: Path) -> None:
    """Unit level on a real full file system: commits fail with SQLITE_FULL, the outbox reports
    the fault once, keeps the rows in memory (bounded, oldest telemetry dropped first, never the
    alarm), serves them from memory, and writes them once space is back."""
    with small_disk(tmp_path / "disk", "512k") as disk:
        faults: list[str | None] = []
        losses: list[tuple[int, int, int, str]] = []
        box = Outbox(disk / "o.db", max_bytes=10**9, commit_interval=1.0, clock=time.time,
                     memory_bytes=20_000, on_fault=faults.append,
                     on_overflow=lambda *a: losses.append(a))
        box.enqueue("dev/a/tm", {"i": 0}, prio=PRIO_TELEMETRY, sess=1)
        assert box.commit()
        filler = fill(disk)
        box.enqueue("evt", {"type": "alarm.raised"}, prio=PRIO_ALARM, sess=1)  # must not raise
        for i in range(1, 400):
            box.enqueue("dev/a/tm", {"i": i, "pad": "x" * 100}, prio=PRIO_TELEMETRY, sess=1)
            box.commit()
        assert faults == ["disk full"] and box.stats()["fault"] == "disk full"
        assert losses and losses[0][3] == "memory" and losses[0][0] == 3  # oldest went first
        out = box.peek(1000)
        assert out[0].topic == "evt" and out[1].seq == 1  # alarm first, from memory too
        assert box.stats()["memory_bytes"] <= 20_000
        box.ack(out[:5])  # delivered from memory: never written later
        filler.unlink()
        assert box.commit()
        assert faults == ["disk full", None] and box.fault is None
        on_disk = {r[0] for r in box._db.execute("SELECT seq FROM outbox")}
        dropped = set().union(*(range(first, last + 1) for first, last, _, _ in losses))
        assert len(dropped) == sum(count for _, _, count, _ in losses)
        # everything accepted is on disk now, except what was delivered or reported as dropped
        assert on_disk == set(range(1, 402)) - {m.seq for m in out[:5]} - dropped
        box.close()
        check = sqlite3.connect(disk / "o.db")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()


def test_an_outbox_opened_on_a_full_disk_reports_the_fault_from_its_first_write(
        tmp_path: Path) -> None:
    """Unit level: an outbox file left by an earlier run, the disk full before it is opened
    again. It opens (not set aside as damaged), serves what it holds, the session write reports
    `disk full` through the constructor's `on_fault`, and the session reaches the disk once
    space is back."""
    with small_disk(tmp_path / "disk", "512k") as disk:
        earlier = Outbox(disk / "o.db", max_bytes=10**9, commit_interval=1.0, clock=time.time)
        assert earlier.next_session() == 1
        earlier.enqueue("dev/a/tm", {"i": 0}, prio=PRIO_TELEMETRY, sess=1)
        earlier.close()
        filler = fill(disk)
        faults: list[str | None] = []
        box = Outbox(disk / "o.db", max_bytes=10**9, commit_interval=1.0, clock=time.time,
                     on_fault=faults.append)
        assert box.salvage is None and not list(disk.glob("o.db.corrupt-*"))
        assert faults == []
        assert box.next_session() == 2 and faults == ["disk full"]
        box.enqueue("evt", {"type": "device.down"}, prio=PRIO_EVENT, sess=2)
        assert [(m.topic, m.seq) for m in box.peek(10)] == [("evt", 2), ("dev/a/tm", 1)]
        filler.unlink()
        assert box.commit() and faults == ["disk full", None]
        box.close()
        check = sqlite3.connect(disk / "o.db")
        assert check.execute("SELECT value FROM meta WHERE key = 'sess'").fetchone()[0] == "2"
        assert [r[0] for r in check.execute("SELECT seq FROM outbox ORDER BY seq")] == [1, 2]
        check.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_agent_keeps_running_on_a_full_disk_and_resumes(tmp_path: Path,
                                                              building: tuple) -> None:
    """The agent process with its outbox on a 3 MiB tmpfs; the disk is filled while it polls,
    the broker goes away for a while, then space comes back. Proves: the process never exits;
    `buffer.fault` (reason disk full) arrives on evt and `health` shows the fault; the memory
    bound drops the oldest telemetry and says so (buffer.overflow, reason memory); after space
    returns `buffer.restored` arrives and writing resumes; every seq is delivered or inside a
    reported dropped range; the file passes integrity_check."""
    _, modbus_port = building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    with small_disk(tmp_path / "disk", "3m") as disk:
        path = config(tmp_path, broker, modbus_port, health={"interval": "300ms"},
                      buffer={"path": str(disk / "outbox.db"), "memory_mb": 0.01})
        agent = AgentProcess(path, tmp_path / "agent.log")
        try:
            async with observing(broker.port) as observer:
                await agent.start()
                await observer.wait_for(lambda ms: len(deduplicated(observer)) >= 5)
                filler = fill(disk)

                def events(kind: str) -> list[dict]:
                    return [m.body for m in observer.messages
                            if m.topic.endswith("/evt") and m.body.get("type") == kind]

                await observer.wait_for(lambda ms: events("buffer.fault"), timeout=20)
                assert events("buffer.fault")[0]["reason"] == "disk full"
                await observer.wait_for(lambda ms: any(
                    m.topic.endswith("/health") and m.body["outbox"]["fault"] == "disk full"
                    for m in ms), timeout=10)
                broker.stop()
                await asyncio.sleep(5)  # memory (10 kB) overflows meanwhile
                assert agent.alive
                broker.start()
                await observer.wait_for(lambda ms: any(
                    e.get("reason") == "memory" for e in events("buffer.overflow")), timeout=30)
                filler.unlink()
                await observer.wait_for(lambda ms: events("buffer.restored"), timeout=20)
                await asyncio.sleep(2)
                assert agent.alive
                code = await agent.stop()
                assert code == 0
        finally:
            if agent.alive:
                await agent.stop()
            broker.stop()
        check = sqlite3.connect(disk / "outbox.db")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        left = {r[0] for r in check.execute("SELECT seq FROM outbox")}
        check.close()
    delivered = set(deduplicated(observer))
    dropped: set[int] = set()
    for event in [m.body for m in observer.messages if m.body.get("type") == "buffer.overflow"]:
        dropped |= set(range(event["first_seq"], event["last_seq"] + 1))
    missing = set(range(1, max(delivered | left) + 1)) - delivered - left - dropped
    assert not missing, sorted(missing)[:20]
    health = [m.body for m in observer.messages if m.topic.endswith("/health")]
    assert health[-1]["outbox"]["fault"] is None
    assert json.dumps(health[-1]["outbox"]["write_bytes_per_1000_readings"]) != "null"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_agent_started_on_a_full_disk_reports_the_fault_first(tmp_path: Path,
                                                                    building: tuple) -> None:
    """A gateway restarted while its disk is already full (an earlier run left the outbox there):
    the agent starts anyway (SQLite cannot grow its -shm file, so the outbox opens with the WAL
    index in memory, and the damage check, which needs it too, does not mistake the full disk
    for a rotten file), and the first message the outbox publishes is `buffer.fault` (reason disk
    full), raised before the pipeline existed; it runs from memory, and once space is back says
    `buffer.restored` and writes again: nothing accepted from then on is lost."""
    _, modbus_port = building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    with small_disk(tmp_path / "disk", "3m") as disk:
        db = disk / "outbox.db"
        path = config(tmp_path, broker, modbus_port, health={"interval": "300ms"},
                      buffer={"path": str(db), "memory_mb": 1})
        async with AgentProcess(path, tmp_path / "earlier.log") as earlier:  # its last run
            async with observing(broker.port, "earlier-observer") as observer:
                await earlier.start()
                await observer.wait_for(lambda ms: len(deduplicated(observer)) >= 3)
            assert await earlier.stop() == 0
        filler = fill(disk)
        size_when_full = db.stat().st_size
        agent = AgentProcess(path, tmp_path / "agent.log")
        try:
            async with observing(broker.port) as observer:
                await agent.start()

                def events(kind: str) -> list[dict]:
                    return [m.body for m in observer.messages
                            if m.topic.endswith("/evt") and m.body.get("type") == kind]

                await observer.wait_for(lambda ms: events("buffer.fault"), timeout=30)
                fault = events("buffer.fault")[0]
                assert fault["reason"] == "disk full" and fault["sess"] == 2
                this_run = [b for b in outbox_messages(observer) if b["sess"] == fault["sess"]]
                assert min(b["seq"] for b in this_run) == fault["seq"]  # before anything else
                assert not list(disk.glob("outbox.db.corrupt-*"))  # a full disk is no damage
                await observer.wait_for(lambda ms: any(
                    m.topic.endswith("/health") and m.body["outbox"]["fault"] == "disk full"
                    for m in ms), timeout=10)
                await observer.wait_for(lambda ms: sum(  # telemetry of this run, from memory
                    1 for b in outbox_messages(observer) if b["sess"] == 2 and "e" in b) >= 5,
                    timeout=20)
                assert agent.alive and db.stat().st_size == size_when_full
                filler.unlink()
                await observer.wait_for(lambda ms: events("buffer.restored"), timeout=20)
                await asyncio.sleep(1.5)  # a batch commit after the restore
                assert agent.alive
                assert await agent.stop() == 0
        finally:
            if agent.alive:
                await agent.stop()
            broker.stop()
        check = sqlite3.connect(db)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sess = int(check.execute("SELECT value FROM meta WHERE key = 'sess'").fetchone()[0])
        check.close()
        assert sess == 2  # the session counted on the full disk reached it once space was back
