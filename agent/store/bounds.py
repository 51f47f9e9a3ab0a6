"""The outbox's bounds and what goes when one is passed: delivered rows kept for resend first,
then the oldest telemetry; never alarms, events or billing indexes.

- `max_bytes` on disk: trimmed to 90 % so a full queue does not trim at every commit;
- `memory_bytes` while the disk fails: memory keeps the newest rows;
- `max_age`: within the current boot the age is monotonic (a clock jump expires nothing); rows
  of an earlier boot use their corrected wall time.

Every loss, here or in quarantine, is counted and reported through `on_overflow` with its seq
range (the agent publishes it as a `buffer.overflow` event)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from agent.runtime.timesync import TimeKeeper
from agent.store import schema
from agent.store.fault import DiskFault
from agent.store.pending import Pending
from agent.store.rows import PRIO_TELEMETRY, SIZE_SQL
from agent.store.signals import Signals
from agent.store.tally import Tally

log = logging.getLogger("agent.store.outbox")

OnOverflow = Callable[[int, int, int, str], None]  # first seq, last seq, count, reason


def log_overflow(first: int, last: int, count: int, reason: str) -> None:
    log.warning("outbox: dropped %d telemetry messages (seq %d..%d, %s)", count, first, last,
                reason)

TRIM_TO = 0.9  # of a bound, once it is passed


def space_victims(db: sqlite3.Connection, *, over: int,
                  retained: bool) -> tuple[list[int], list[int], int]:
    """Rows to delete to free `over` bytes: (retained seqs, telemetry seqs, bytes freed)."""
    freed = 0
    kept: list[int] = []
    if retained:
        for seq, size in db.execute(f"SELECT seq, {SIZE_SQL} FROM outbox "
                                    "WHERE sent_at IS NOT NULL ORDER BY sent_at, seq"):
            if freed >= over:
                break
            kept.append(seq)
            freed += size
    victims: list[int] = []
    if freed < over:
        for seq, size in db.execute(
                f"SELECT seq, {SIZE_SQL} FROM outbox WHERE prio = ? AND sent_at IS NULL "
                "AND seq NOT IN (SELECT seq FROM temp.skip) ORDER BY seq", (PRIO_TELEMETRY,)):
            if freed >= over:
                break
            victims.append(seq)
            freed += size
    return kept, victims, freed


def trim_memory(pending: Pending, limit: int) -> list[int]:
    """Past `limit` bytes in memory, drop the oldest telemetry down to 90 %; the seqs dropped."""
    if pending.bytes <= limit:
        return []
    victims: list[int] = []
    for row in pending:
        if pending.bytes <= int(limit * TRIM_TO):
            break
        if row.prio == PRIO_TELEMETRY:
            pending.pop(row.seq)
            victims.append(row.seq)
    return victims


def expired(db: sqlite3.Connection, *, max_age: float, now_wall: float, now_mono: float,
            first_session_of_boot: int) -> list[tuple[int, int]]:
    """Queued telemetry older than `max_age`, not held for the clock: (seq, size) rows."""
    return db.execute(
        f"SELECT seq, {SIZE_SQL} FROM outbox WHERE prio = ? AND hold = 0 "
        "AND sent_at IS NULL AND seq NOT IN (SELECT seq FROM temp.skip) AND ("
        "(sess >= ? AND mono IS NOT NULL AND mono < ?) OR "
        "((sess < ? OR mono IS NULL) AND ts < ?)) ORDER BY seq",
        (PRIO_TELEMETRY, first_session_of_boot, now_mono - max_age,
         first_session_of_boot, now_wall - max_age)).fetchall()


class Bounds:
    """Applies the three bounds to the outbox's table and memory, counts and reports losses."""

    def __init__(self, db: sqlite3.Connection, tally: Tally, pending: Pending, signals: Signals,
                 disk: DiskFault, *, max_bytes: int, memory_bytes: int, max_age: float | None,
                 timekeeper: TimeKeeper | None, clock: Callable[[], float],
                 on_overflow: OnOverflow | None) -> None:
        self._db = db
        self._tally = tally
        self._pending = pending
        self._signals = signals
        self._disk = disk
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.max_age = max_age
        self._time = timekeeper
        self._clock = clock
        self.on_overflow = on_overflow or log_overflow

    def lost(self, seqs: list[int], reason: str) -> None:
        self._tally.dropped += len(seqs)
        self._signals.settle(self._tally.queued, len(self._pending))
        self.on_overflow(seqs[0], seqs[-1], len(seqs), reason)

    def space(self) -> None:
        """After a commit: past `max_bytes`, make room (retained rows, then oldest telemetry)."""
        if self._tally.bytes <= self.max_bytes:
            return
        over = self._tally.bytes - int(self.max_bytes * TRIM_TO)
        retained, victims, freed = space_victims(self._db, over=over,
                                                 retained=bool(self._tally.retained))
        if not (retained or victims) or not self._delete(retained + victims,
                                                         f"{len(victims)} dropped for space"):
            return
        self._tally.bytes -= freed
        self._tally.retained -= len(retained)
        self._tally.queued -= len(victims)
        if victims:
            self.lost(victims, "max_mb")

    def memory(self) -> None:
        """While the disk fails, memory holds the newest rows: oldest telemetry goes first."""
        victims = trim_memory(self._pending, self.memory_bytes)
        if victims:
            self.lost(victims, "memory")

    def expire(self, first_session_of_boot: int) -> None:
        """Drop telemetry older than `max_age`. Never while the clock is not real, never alarms
        or events, never rows waiting for a clock correction."""
        if not self.max_age or (self._time is not None and not self._time.synced()):
            return
        rows = expired(self._db, max_age=self.max_age, now_wall=self._clock(),
                       now_mono=self._time.clock.monotonic() if self._time else 0.0,
                       first_session_of_boot=first_session_of_boot)
        if not rows or not self._delete([seq for seq, _ in rows], "expiry"):
            return
        self._tally.bytes -= sum(size for _, size in rows)
        self._tally.queued -= len(rows)
        self._tally.expired += len(rows)
        self.lost([seq for seq, _ in rows], "max_age")

    def _delete(self, seqs: list[int], what: str) -> bool:
        try:
            with schema.transaction(self._db):
                schema.delete(self._db, seqs)
        except sqlite3.Error as exc:
            self._disk.check(exc, f"outbox: {what}")
            return False
        return True
