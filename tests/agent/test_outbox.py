"""The outbox: order, priority, batching, persistence, bounded size, SIGKILL safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from agent.outbox import PRIO_ALARM, PRIO_EVENT, PRIO_TELEMETRY, Outbox


def open_outbox(path: Path, max_bytes: int = 10**9) -> Outbox:
    return Outbox(path, max_bytes=max_bytes, commit_interval=1.0, clock=time.time)


def test_telemetry_waits_for_the_batch_commit_alarms_do_not(tmp_path: Path) -> None:
    box = open_outbox(tmp_path / "o.db")
    box.enqueue("dev/a/tm", {"e": [1]}, prio=PRIO_TELEMETRY, sess=1)
    box.enqueue("dev/a/tm", {"e": [2]}, prio=PRIO_TELEMETRY, sess=1)
    assert box.peek(10) == [] and box.pending == 2  # not on disk yet: not publishable
    box.enqueue("evt", {"type": "alarm.raised"}, prio=PRIO_ALARM, sess=1)
    # the alarm commit carries the pending telemetry with it; the alarm still goes first
    assert [m.topic for m in box.peek(10)] == ["evt", "dev/a/tm", "dev/a/tm"]
    assert box.commits == 1


def test_order_is_priority_then_seq_and_ack_deletes(tmp_path: Path) -> None:
    box = open_outbox(tmp_path / "o.db")
    seqs = [box.enqueue(f"t{i}", {"i": i}, prio=p, sess=1)[0]
            for i, p in enumerate([PRIO_TELEMETRY, PRIO_EVENT, PRIO_TELEMETRY, PRIO_ALARM])]
    box.commit()
    assert seqs == [1, 2, 3, 4]
    assert [m.seq for m in box.peek(10)] == [4, 2, 1, 3]
    first = box.peek(2)
    box.ack(first)
    assert [m.seq for m in box.peek(10)] == [1, 3]
    assert box.depth() == 2 and not box.emptied.is_set()
    box.ack(box.peek(10))
    assert box.depth() == 0 and box.emptied.is_set()
    box.commit()  # the deletes reach the disk with the next batch
    assert box._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_seq_and_session_survive_a_restart(tmp_path: Path) -> None:
    box = open_outbox(tmp_path / "o.db")
    assert box.next_session() == 1
    for i in range(5):
        box.enqueue("t", {"i": i}, prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    box.ack(box.peek(10))  # everything delivered: the table is empty
    box.close()
    box = open_outbox(tmp_path / "o.db")
    assert box.next_session() == 2
    assert box.enqueue("t", {}, prio=PRIO_TELEMETRY, sess=2)[0] == 6  # never reused


def test_mid_is_unique_and_stored(tmp_path: Path) -> None:
    box = open_outbox(tmp_path / "o.db")
    mids = {box.enqueue("t", {}, prio=PRIO_TELEMETRY, sess=1)[1] for _ in range(500)}
    box.commit()
    assert len(mids) == 500
    assert {m.mid for m in box.peek(1000)} == mids


def test_overflow_drops_oldest_telemetry_never_alarms(tmp_path: Path) -> None:
    box = open_outbox(tmp_path / "o.db", max_bytes=20_000)
    dropped: list[tuple[int, int, int]] = []
    box.on_overflow = lambda first, last, count: dropped.append((first, last, count))  # type: ignore[method-assign]
    box.enqueue("evt", {"type": "alarm.raised", "pad": "x" * 100}, prio=PRIO_ALARM, sess=1)
    for i in range(300):
        box.enqueue("dev/a/tm", {"i": i, "pad": "y" * 100}, prio=PRIO_TELEMETRY, sess=1)
        if i % 50 == 49:
            box.commit()
    stats = box.stats()
    assert stats["bytes"] <= 20_000
    assert stats["alarms"] == 1  # the alarm is still there
    assert dropped and dropped[0][0] == 2  # the oldest telemetry went first
    kept = [m.seq for m in box.peek(1000) if m.prio == PRIO_TELEMETRY]
    assert kept == sorted(kept) and kept[-1] == 301  # the newest stayed
    assert sum(c for _, _, c in dropped) == box.dropped == 300 - len(kept)


WRITER = """
import sys, time
from pathlib import Path
from agent.outbox import Outbox, PRIO_TELEMETRY, PRIO_ALARM
box = Outbox(Path(sys.argv[1]), max_bytes=10**9, commit_interval=1.0, clock=time.time)
i = 0
while True:
    i += 1
    seq, _ = box.enqueue("dev/a/tm", {"i": i}, prio=PRIO_TELEMETRY, sess=1)
    if i % 7 == 0:
        box.enqueue("evt", {"i": i}, prio=PRIO_ALARM, sess=1)
    if i % 20 == 0:
        box.commit()
        print(box.last_committed_seq(), flush=True)
    if i % 3 == 0:
        box.ack(box.peek(2))
"""


def test_sigkill_mid_write_never_corrupts_or_renumbers(tmp_path: Path) -> None:
    """A writer killed at random moments leaves a sound database whose committed seqs are
    contiguous with the next start: nothing renumbered, nothing reused."""
    db = tmp_path / "o.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    last_seen = 0
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                                env=env, text=True)
        assert proc.stdout is not None
        committed = 0
        for _ in range(3 + round_ * 2):  # wait for a few commits, then kill mid-stream
            committed = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = sqlite3.connect(db)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = [r[0] for r in check.execute("SELECT seq FROM outbox ORDER BY seq")]
        next_seq = int(check.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
        check.close()
        assert next_seq > committed >= last_seen  # the counter never goes back
        assert all(seq < next_seq for seq in rows)
        last_seen = committed
        box = open_outbox(db)
        first_new = box.enqueue("t", {}, prio=PRIO_TELEMETRY, sess=2)[0]
        box.commit()
        assert first_new == next_seq  # continues exactly where the committed counter was
        payloads = [json.loads(m.body) for m in box.peek(10**6)]
        box.close()
        assert all(isinstance(p, dict) for p in payloads)
