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

import pytest

from agent.store.outbox import PRIO_ALARM, PRIO_EVENT, PRIO_TELEMETRY, Outbox


def open_outbox(path: Path, max_bytes: int = 10**9, **kw: object) -> Outbox:
    return Outbox(path, max_bytes=max_bytes, commit_interval=1.0, clock=time.time,
                  **kw)  # type: ignore[arg-type]


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
    dropped: list[tuple[int, int, int]] = []
    box = open_outbox(tmp_path / "o.db", max_bytes=20_000,
                      on_overflow=lambda first, last, count, reason: dropped.append(
                          (first, last, count)))
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

import pytest
from agent.store.outbox import Outbox, PRIO_TELEMETRY, PRIO_ALARM
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


# -- issue 5: time, expiry, end-to-end release, resend, pacing, SD housekeeping -----------------

class FakeClock:
    """A Pi without RTC: the wall clock starts at 1970 and NTP sets it later; the monotonic clock
    never jumps. `synced()` stands in for the kernel's adjtimex probe."""

    def __init__(self, wall: float = 1000.0, synced: bool = False) -> None:
        self.mono = 50.0
        self.offset = wall - self.mono
        self.ntp = synced

    def time(self) -> float:
        return self.mono + self.offset

    def monotonic(self) -> float:
        return self.mono

    def synced(self) -> bool:
        return self.ntp



def timed_outbox(path: Path, clock: FakeClock, **kw: object) -> Outbox:
    from agent.runtime.timesync import TimeKeeper  # noqa: PLC0415

    return Outbox(path, max_bytes=10**9, commit_interval=1.0, clock=clock.time,
                  timekeeper=TimeKeeper(clock), **kw)  # type: ignore[arg-type]


def tm(box: Outbox, clock: FakeClock, i: int) -> int:
    ts = clock.time()
    body = {"e": [{"bn": "urn:dev:bgw:gw:d:", "bt": ts, "n": "p", "v": i}]}
    return box.enqueue("dev/d/tm", body, prio=PRIO_TELEMETRY, sess=box.next_session() if i < 0
                       else 1, ts=ts)[0]


def test_readings_before_sync_are_held_then_published_with_corrected_time(tmp_path: Path) -> None:
    """A reading stamped while the clock reads 1970 is not publishable; once NTP sets the clock,
    its ts (and SenML bt) become mono + offset, the real time it was taken, and the seq order
    stays as it was."""
    from agent.runtime.timesync import TimeKeeper  # noqa: PLC0415

    clock = FakeClock(wall=1000.0)
    tk = TimeKeeper(clock)
    box = Outbox(tmp_path / "o.db", max_bytes=10**9, commit_interval=1.0, clock=clock.time,
                 timekeeper=tk)
    box.next_session()
    taken = []
    for i in range(5):
        taken.append(clock.mono)
        tm(box, clock, i)
        clock.mono += 10
    box.commit()
    assert box.peek(10) == [] and box.stats()["held_for_clock"] == 5
    real = 1_767_225_600.0
    clock.offset = real - clock.mono + 123.0  # NTP steps the clock
    clock.ntp = True
    became, jump = tk.check()
    assert became and jump is not None and jump > 1e9
    box.clock_synced(tk.offset())
    box.commit()
    out = box.peek(10)
    assert [m.seq for m in out] == [1, 2, 3, 4, 5]
    for message, mono in zip(out, taken, strict=True):
        assert message.ts == pytest.approx(mono + tk.offset(), abs=1e-3)
        assert message.fields()["e"][0]["bt"] == pytest.approx(message.ts, abs=1e-3)
        assert message.ts > 1.7e9  # never 1970
    tm(box, clock, 9)  # after sync: not held
    box.commit()
    assert len(box.peek(10)) == 6


def test_max_age_is_monotonic_so_clock_jumps_drop_nothing(tmp_path: Path) -> None:
    """With max_age set, a wall clock jump of a day forwards or backwards expires nothing and
    reorders nothing; only monotonic age does, and then only telemetry, reported as max_age."""
    clock = FakeClock(wall=1_767_225_600.0, synced=True)
    losses: list[tuple[int, int, int, str]] = []
    box = timed_outbox(tmp_path / "o.db", clock, max_age=60.0,
                       on_overflow=lambda *a: losses.append(a))
    box.next_session()
    for i in range(10):
        tm(box, clock, i)
        clock.mono += 1
    box.enqueue("evt", {"type": "alarm.raised"}, prio=PRIO_ALARM, sess=1)
    clock.offset += 86400  # a day forwards
    box.maintain(force=True)
    clock.offset -= 2 * 86400  # two days back
    box.maintain(force=True)
    assert losses == [] and box.depth() == 11
    assert [m.seq for m in box.peek(20)] == [11, *range(1, 11)]
    clock.mono += 55  # rows 1..5 are now older than 60 s of monotonic time
    box.maintain(force=True)
    assert losses == [(1, 5, 5, "max_age")]
    assert [m.seq for m in box.peek(20)] == [11, 6, 7, 8, 9, 10]


def test_backend_release_keeps_rows_until_the_watermark(tmp_path: Path) -> None:
    """release: backend — a PUBACK only marks a row sent (not offered again on this connection);
    a new connection offers it again; the backend's watermark {seq: N} deletes up to N."""
    from agent.store.outbox import parse_watermark  # noqa: PLC0415

    box = Outbox(tmp_path / "o.db", max_bytes=10**9, commit_interval=1.0, clock=time.time,
                 release="backend")
    for i in range(6):
        box.enqueue("t", {"i": i}, prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    box.ack(box.peek(4))
    assert [m.seq for m in box.peek(10)] == [5, 6] and box.depth() == 6
    box.rewind()  # reconnect: unreleased rows go again
    assert [m.seq for m in box.peek(10)] == [1, 2, 3, 4, 5, 6]
    assert parse_watermark(b'{"seq": 3}') == 3 and parse_watermark(b'{"seq": true}') is None
    assert parse_watermark(b"garbage") is None
    assert box.release_upto(3) == 3
    box.commit()
    assert [m.seq for m in box.peek(10)] == [4, 5, 6] and box.depth() == 3
    assert box._db.execute("SELECT MIN(seq) FROM outbox").fetchone()[0] == 4


def test_resend_serves_retained_rows_with_their_seq_and_mid(tmp_path: Path) -> None:
    """With retain set, delivered rows stay (not offered) until the retention ends; resend puts
    a range back in the queue with the same seq and mid; without retain it is unavailable."""
    from agent.store.outbox import ResendUnavailable  # noqa: PLC0415

    box = Outbox(tmp_path / "o.db", max_bytes=10**9, commit_interval=1.0, clock=time.time,
                 retain=3600.0)
    for i in range(5):
        box.enqueue("t", {"i": i}, prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    first = box.peek(10)
    box.ack(first)
    box.commit()
    assert box.peek(10) == [] and box.depth() == 0 and box.stats()["retained"] == 5
    result = box.resend(2, 3)
    assert result["resent"] == 2 and result["retained"] == {"first_seq": 1, "last_seq": 5}
    again = box.peek(10)
    assert [(m.seq, m.mid) for m in again] == [(m.seq, m.mid) for m in first[1:3]]
    plain = open_outbox(tmp_path / "p.db")
    with pytest.raises(ResendUnavailable):
        plain.resend(1, 2)


def test_backlog_is_paced_and_live_telemetry_overtakes_only_a_large_one(tmp_path: Path) -> None:
    """Telemetry up to hist_until is the backlog: within its budget everything leaves in seq
    order; past the budget live telemetry and alarms go first and the backlog waits, in order."""
    box = open_outbox(tmp_path / "o.db")
    for i in range(10):
        box.enqueue("t", {"i": i}, prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    hist_until = box.last_committed_seq()
    box.enqueue("t", {"live": 1}, prio=PRIO_TELEMETRY, sess=1)
    box.enqueue("evt", {"type": "alarm"}, prio=PRIO_ALARM, sess=1)
    assert [m.seq for m in box.peek(20, hist_until=hist_until, hist_budget=100)] == [
        12, *range(1, 12)]
    paced = box.peek(20, hist_until=hist_until, hist_budget=3)
    assert [m.seq for m in paced] == [12, 1, 2, 3, 11] and box.throttled
    box.ack(paced)
    assert box.peek(20, hist_until=hist_until, hist_budget=0) == [] and box.throttled
    assert [m.seq for m in box.peek(20, hist_until=hist_until, hist_budget=2)] == [4, 5]


def test_drained_backlog_gives_pages_back_and_checkpoints(tmp_path: Path) -> None:
    """SD housekeeping: after a large backlog is delivered the WAL is checkpointed and truncated
    and incremental vacuum returns the free pages, so the file shrinks without a full VACUUM."""
    box = open_outbox(tmp_path / "o.db")
    for i in range(3000):
        box.enqueue("dev/a/tm", {"i": i, "pad": "z" * 1000}, prio=PRIO_TELEMETRY, sess=1)
        if i % 500 == 499:
            box.commit()
    box.commit()
    box._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    full = (tmp_path / "o.db").stat().st_size
    while batch := box.peek(500):
        box.ack(batch)
        box.commit()
    box.maintain(force=True)
    assert box._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert box.vacuumed_pages > 0 and box.checkpoints >= 1
    assert (tmp_path / "o.db").stat().st_size < full / 4
    assert (tmp_path / "o.db-wal").stat().st_size == 0
    assert box.stats()["write_bytes_per_1000_readings"] is None  # no SenML readings counted


def test_an_old_database_is_migrated(tmp_path: Path) -> None:
    """A file written by the previous schema (no mono/hold/sent_at) opens, keeps its rows and
    its counter, and they are published."""
    db = sqlite3.connect(tmp_path / "o.db")
    db.executescript("""
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, prio INTEGER NOT NULL, topic TEXT NOT NULL,
          retain INTEGER NOT NULL, mid TEXT NOT NULL, sess INTEGER NOT NULL, ts REAL NOT NULL,
          body BLOB NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO outbox VALUES (7, 2, 't', 0, 'm7', 1, 1.0, '{}');
        INSERT INTO meta VALUES ('next_seq', '8');""")
    db.commit()
    db.close()
    box = open_outbox(tmp_path / "o.db")
    assert [m.seq for m in box.peek(5)] == [7]
    assert box.enqueue("t", {}, prio=PRIO_TELEMETRY, sess=2)[0] == 8


def test_loss_and_fault_callbacks_are_given_to_the_constructor_not_patched_in(
        tmp_path: Path) -> None:
    losses: list[tuple[int, int, int, str]] = []
    box = open_outbox(tmp_path / "o.db", max_bytes=2_000, on_overflow=lambda *a: losses.append(a))
    for i in range(40):
        box.enqueue("dev/a/tm", {"i": i, "pad": "y" * 100}, prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    assert losses and losses[0][:2] == (1, losses[0][0] + losses[0][2] - 1)
    assert losses[0][3] == "max_mb" and box.dropped == sum(c for _, _, c, _ in losses)
    with pytest.raises(AttributeError):
        box.on_overflow = print  # type: ignore[misc]  # the old way would be silently ignored
    with pytest.raises(AttributeError):
        box.on_fault = print  # type: ignore[misc]
