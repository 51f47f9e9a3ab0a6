"""What the outbox counts, and the `buffer.stats` / `health.outbox` report built from it.

`queued`, `bytes` and `retained` mirror the table (kept in step by every write so a peek or a
bound never has to count rows); the rest only ever grow while the process runs."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from agent.store.diskguard import WearMeter
from agent.store.pending import Pending
from agent.store.rows import PRIO_ALARM, PRIO_EVENT, PRIO_INDEX, PRIO_TELEMETRY
from agent.store.salvage import Salvage


@dataclass
class Tally:
    queued: int = 0  # committed rows not acknowledged yet
    bytes: int = 0  # of every row on disk, retained ones too (the max_bytes bound)
    retained: int = 0  # delivered rows kept for buffer.resend
    dropped: int = 0  # lost to a bound or set aside, all reported through on_overflow
    expired: int = 0  # of which to max_age
    quarantined: int = 0  # rows that could not be decoded: set aside, never published
    faults: int = 0  # times the disk started refusing writes
    commits: int = 0
    checkpoints: int = 0
    vacuumed_pages: int = 0


def queue_figures(db: sqlite3.Connection) -> tuple[tuple[Any, ...], dict[int, int], int]:
    """(count, oldest ts, first seq, last seq) of the queue, its count by priority, and the
    rows held for the clock. Raises sqlite3.Error."""
    row = db.execute("SELECT COUNT(*), MIN(ts), MIN(seq), MAX(seq) FROM outbox "
                     "WHERE sent_at IS NULL").fetchone()
    by_prio = dict(db.execute("SELECT prio, COUNT(*) FROM outbox WHERE sent_at IS NULL "
                              "GROUP BY prio"))
    held = db.execute("SELECT COUNT(*) FROM outbox WHERE hold = 1").fetchone()[0]
    return row, by_prio, held


def report(tally: Tally, pending: Pending, figures: tuple[tuple[Any, ...], dict[int, int], int],
           *, now: float, next_seq: int, max_bytes: int, release: str, fault: str | None,
           wear: WearMeter, salvage: Salvage | None) -> dict[str, Any]:
    row, by_prio, held = figures
    oldest = row[1]
    return {
        "depth": tally.queued + len(pending),
        "committed": tally.queued,
        "pending": len(pending),
        "alarms": by_prio.get(PRIO_ALARM, 0),
        "events": by_prio.get(PRIO_EVENT, 0),
        "telemetry": by_prio.get(PRIO_TELEMETRY, 0),
        "indexes": by_prio.get(PRIO_INDEX, 0),
        # a clock set back makes the newest rows look "from the future": an age is never negative
        "oldest_age": max(0.0, round(now - oldest, 3)) if oldest is not None else 0,
        "first_seq": row[2],
        "last_seq": row[3],
        "next_seq": next_seq,
        "bytes": tally.bytes,
        "max_bytes": max_bytes,
        "dropped": tally.dropped,
        "expired": tally.expired,
        "retained": tally.retained,
        "held_for_clock": held + pending.held(),
        "release": release,
        "fault": fault,
        "faults": tally.faults,
        "memory_bytes": pending.bytes,
        "commits": tally.commits,
        "checkpoints": tally.checkpoints,
        "write_bytes": wear.written(),
        "write_bytes_per_1000_readings": wear.per_1000(),
        "quarantined": tally.quarantined,
        "salvage": salvage.as_dict() if salvage is not None else None,
    }
