"""What the outbox counts, and the `buffer.stats` / `health.outbox` report built from it.

`queued`, `bytes` and `retained` mirror the table (kept in step by every write so a peek or a
bound never has to count rows); the rest only ever grow while the process runs."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, NamedTuple

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


class Figures(NamedTuple):
    """What only the table can tell about the queue (the rest is tallied as it happens)."""

    oldest_ts: float | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    by_prio: dict[int, int] = {}
    held: int = 0  # rows waiting for the clock correction


def queue_figures(db: sqlite3.Connection) -> Figures:
    """Raises sqlite3.Error."""
    oldest, first, last = db.execute("SELECT MIN(ts), MIN(seq), MAX(seq) FROM outbox "
                                     "WHERE sent_at IS NULL").fetchone()
    by_prio = dict(db.execute("SELECT prio, COUNT(*) FROM outbox WHERE sent_at IS NULL "
                              "GROUP BY prio"))
    (held,) = db.execute("SELECT COUNT(*) FROM outbox WHERE hold = 1").fetchone()
    return Figures(oldest, first, last, by_prio, held)


def report(tally: Tally, pending: Pending, figures: Figures, *, now: float, next_seq: int,
           max_bytes: int, release: str, fault: str | None, wear: WearMeter,
           salvage: Salvage | None) -> dict[str, Any]:
    by_prio, oldest = figures.by_prio, figures.oldest_ts
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
        "first_seq": figures.first_seq,
        "last_seq": figures.last_seq,
        "next_seq": next_seq,
        "bytes": tally.bytes,
        "max_bytes": max_bytes,
        "dropped": tally.dropped,
        "expired": tally.expired,
        "retained": tally.retained,
        "held_for_clock": figures.held + pending.held(),
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
