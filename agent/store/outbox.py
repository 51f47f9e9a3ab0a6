"""The store-and-forward outbox: the single path from the agent to the broker.

    enqueue ──► pending (memory, seq+mid assigned) ──commit──► SQLite (WAL) ──peek──► uplink
                      ▲ alarms commit at once;                      │
                      └ telemetry at most every commit_interval     └─ack─► delete (or keep as
                                                                            "sent" for resend)

Telemetry is committed in batches so an SD card sees about one write a second; alarms and device
events are committed before `enqueue` returns. Only committed rows are ever published, so what the
broker has seen is always on disk first, and a SIGKILL can only lose what was never published.
`seq` comes from a counter stored in the same transaction as the rows: it never goes back, and a
restart continues it without holes in what was committed.

A full, read-only or failing disk does not stop the agent: the rows stay in memory (bounded by
`memory_bytes`, oldest telemetry dropped first), become publishable from memory, the fault is
reported through `on_fault`, and every commit retries until the disk takes writes again.

This module is the queue core; each other job has its module beside it: rows (the row and message
types), schema (the file), meta (small persistent values), pending (memory rows), lanes (peek
order), delivery (ack, backend release, resend), bounds (size, memory, age), restamp (clock
repair), quarantine (rows that do not decode), housekeeping, tally (counters and stats), salvage
(a damaged file) and diskguard (which errors mean the medium).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.sdk.durable import private_sqlite
from agent.sdk.errors import StoreError
from agent.runtime.timesync import TimeKeeper
from agent.store import housekeeping, lanes, quarantine, restamp, schema
from agent.store import salvage as salvage_mod
from agent.store.bounds import Bounds, OnOverflow
from agent.store.delivery import Delivery, Release, ResendUnavailable, parse_watermark
from agent.store.diskguard import WearMeter, medium_fault, starved
from agent.store.fault import DiskFault, OnFault
from agent.store.housekeeping import MAINTAIN_EVERY
from agent.store.meta import Meta
from agent.store.pending import Pending
from agent.store.restamp import shift_times
from agent.store.rows import (COLUMNS, PRIO_ALARM, PRIO_EVENT, PRIO_INDEX, PRIO_TELEMETRY,
                              ROW_OVERHEAD, Message, Row, readings)
from agent.store.signals import Signals
from agent.store.tally import Figures, Tally, queue_figures, report
from agent.uplink.ids import uuid7

# The names the rest of the agent imports from here (the outbox's face).
__all__ = ["MAINTAIN_EVERY", "PRIO_ALARM", "PRIO_EVENT", "PRIO_INDEX", "PRIO_TELEMETRY",
           "ROW_OVERHEAD", "Message", "OnFault", "OnOverflow", "Outbox", "Release",
           "ResendUnavailable", "Row", "parse_watermark", "shift_times"]


def _read_from(part: str, name: str) -> property:
    """A read-only attribute kept by one of the outbox's parts, under the name it always had."""
    return property(lambda self: getattr(getattr(self, part), name), doc=f"{part}.{name}")


class Outbox:
    """Durable FIFO per priority. One instance per process; all calls from the event loop.

    `on_overflow(first, last, count, reason)` hears of every loss (`max_mb`, `max_age`,
    `memory`, `quarantined`); `on_fault(reason)` of the disk refusing writes and, with None, of
    it taking them again. Either may fire from the constructor's first writer, `next_session`."""

    def __init__(self, path: Path, *, max_bytes: int, commit_interval: float,
                 clock: Callable[[], float], max_age: float | None = None, retain: float = 0.0,
                 memory_bytes: int = 8 * 2**20, release: Release = "puback",
                 timekeeper: TimeKeeper | None = None, on_overflow: OnOverflow | None = None,
                 on_fault: OnFault | None = None) -> None:
        self.path = path
        self.commit_interval = commit_interval
        self.time = timekeeper
        self._clock = clock
        # A file the card rotted is set aside and what it still holds carried over (salvage.py).
        # On a full disk the check cannot run (it needs the -shm) and a full disk is no damage:
        # the file is opened as it is and the first write reports the fault.
        full = starved(path) and path.exists()
        damage = None if full else salvage_mod.check(path)
        self.salvage = (salvage_mod.salvage(path, damage, schema.SCHEMA, schema.ALL_COLUMNS)
                        if damage is not None else None)
        private_sqlite(path)  # owner-only, with its -wal and -shm, whatever the umask
        self.exclusive = full  # the WAL index in memory: no other connection to the file
        try:
            self._db = schema.open_db(path, exclusive=full)
            self.meta = Meta(self._db)
            self._next_seq = self.meta.next_seq()
            queued, size, retained = schema.counts(self._db)
        except sqlite3.Error as exc:  # at start the agent refuses to run on a broken store
            if hasattr(self, "_db"):
                self._db.close()
            raise StoreError(f"cannot open the outbox {path}: {exc}") from exc
        self.tally = Tally(queued=queued, bytes=size, retained=retained)
        self._pending = Pending()  # not committed yet (or the disk is failing)
        self.signals = Signals()
        self.emptied, self.committed = self.signals.emptied, self.signals.committed
        self.delivery = Delivery(self._db, self._pending, self.tally, self.signals,
                                 release=release, retain=retain)
        self.disk = DiskFault(self.tally, on_fault, while_failing=self._while_failing,
                              memory_bytes=memory_bytes)
        self.bounds = Bounds(self._db, self.tally, self._pending, self.signals, self.disk,
                             max_bytes=max_bytes, memory_bytes=memory_bytes, max_age=max_age,
                             timekeeper=timekeeper, clock=clock, on_overflow=on_overflow)
        self._restamp: float | None = None  # clock offset to apply to held rows at next commit
        self.throttled = False  # the last peek left backlog behind for the pacer
        (self.committed if queued else self.emptied).set()
        self.wear = WearMeter()
        self._next_maintain = time.monotonic() + MAINTAIN_EVERY
        self._boot_first_sess = self.meta.first_session_of_boot(timekeeper)

    # What health, commands and tests read, from the part that keeps it.
    dropped = _read_from("tally", "dropped")
    expired = _read_from("tally", "expired")
    quarantined = _read_from("tally", "quarantined")
    faults = _read_from("tally", "faults")
    commits = _read_from("tally", "commits")
    checkpoints = _read_from("tally", "checkpoints")
    vacuumed_pages = _read_from("tally", "vacuumed_pages")
    fault = _read_from("disk", "reason")  # why the disk refuses writes; None while it takes them
    max_bytes = _read_from("bounds", "max_bytes")
    release = _read_from("delivery", "release")
    retain = _read_from("delivery", "retain")
    highest_published = _read_from("delivery", "highest_published")
    released_upto = _read_from("delivery", "released_upto")
    # Given to the constructor; read-only, so a caller still patching them in fails loudly.
    on_overflow = _read_from("bounds", "on_overflow")
    on_fault = _read_from("disk", "on_fault")

    # -- session and small persistent values ---------------------------------------------------

    def get_meta(self, key: str) -> Any:
        return self.meta.get(key)

    def meta_items(self, low: str, high: str, limit: int = 10_000) -> list[tuple[str, Any]]:
        """Committed meta values with low <= key < high, in key order (billing's history)."""
        return self.meta.items(low, high, limit)

    def stage_meta(self, values: dict[str, Any]) -> None:
        """Store these meta values with the next batch commit (state that may lag a second)."""
        self.meta.stage(values)
        self.signals.work.set()

    def next_session(self) -> int:
        """The session counter: one more at every start, persisted at once (with the boot)."""
        session = int(self.meta.read("sess", "0")) + 1
        boot = f"{self.time.boot}:{self._boot_first_sess}" if self.time else ""
        try:
            with schema.transaction(self._db):
                self.meta.write_session(session, boot)
        except sqlite3.Error as exc:
            # On a failing disk, start anyway: the counter goes with the first commit that works.
            self.meta.stage({"sess": session})
            self.disk.check(exc, "outbox: cannot store the session")
        return session

    # -- writing --------------------------------------------------------------------------------

    def enqueue(self, topic: str, body: dict[str, Any], *, prio: int, sess: int,
                retain: bool = False, ts: float | None = None,
                meta: dict[str, Any] | None = None, mid: str | None = None) -> tuple[int, str]:
        """Accept one message; all but telemetry is committed before return.

        `meta` values are stored in the same transaction (e.g. the rule engine's alarm state, so an
        alarm and the state that says it was raised can never disagree after a crash); a None
        value deletes its key. `mid` re-sends a message under the id it first had.
        """
        seq = self._next_seq
        self._next_seq += 1
        stamp = self._clock() if ts is None else ts
        hold = 0 if self.time is None or self.time.synced() else 1
        # Positional, in Row's field order: the hot path of every reading (keywords cost ~8 %).
        row = Row(seq, prio, topic, int(retain), mid or uuid7(stamp), sess, stamp,
                  json.dumps(body, separators=(",", ":")).encode(),
                  self.time.mono_of(stamp) if self.time else None, hold)
        self._pending.add(row)
        self.wear.readings += readings(prio, body)
        if meta:
            self.meta.stage(meta)
        if prio != PRIO_TELEMETRY or meta:
            self.commit()
        else:
            self.signals.work.set()
        if self.disk.reason is not None:
            self.bounds.memory()
            if not hold:
                self.committed.set()  # from memory while the disk is failing
        return seq, row.mid

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self, meta: dict[str, Any] | None = None) -> bool:
        """One transaction: the pending rows in, the acknowledged rows out, `meta` values, and the
        clock correction of held rows. False when the disk refused it (rows kept in memory)."""
        if meta:
            self.meta.stage(meta)
        if not (self._pending or self.delivery.acked or self.meta.staged
                or self._restamp is not None):
            return True
        rows = list(self._pending)
        acked = sorted(self.delivery.acked)
        metas = dict(self.meta.staged)
        offset = self._restamp
        db = self._db
        try:
            with schema.transaction(db):
                db.executemany(f"INSERT INTO outbox ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                               rows)
                if self.retain:
                    now = self._clock()
                    db.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?",
                                   [(now, s) for s in acked])
                else:
                    schema.delete(db, acked)
                self.meta.write(self._next_seq, metas)
                restamped = (restamp.apply(db, offset, self._boot_first_sess)
                             if offset is not None else 0)
        except sqlite3.Error as exc:
            self.signals.work.set()  # the committer tries again at its next turn
            self.disk.check(exc, "outbox commit failed")
            return False
        self._pending.committed(rows)
        self.delivery.committed(acked)
        self.meta.written(metas)
        if offset is not None and self._restamp == offset:
            self._restamp = None
        if not self._pending and not self.delivery.acked:
            self.signals.work.clear()
        self.tally.commits += 1
        self.tally.bytes += sum(r.size for r in rows)
        self.tally.queued += len(rows)
        if rows or restamped:
            self.emptied.clear()
            self.committed.set()
        self.disk.leave()
        self.bounds.space()
        return True

    async def commit_periodically(self) -> None:
        """Batch telemetry: one transaction per `commit_interval` at most, none while idle; the
        housekeeping (expiry, retention, checkpoint, vacuum) rides on the same wake-ups."""
        while True:
            try:
                async with asyncio.timeout(MAINTAIN_EVERY):
                    await self.signals.work.wait()
            except TimeoutError:
                pass
            await asyncio.sleep(self.commit_interval)
            self.commit()
            self.maintain()

    def expire(self) -> None:
        """Drop telemetry older than `max_age` (bounds.py)."""
        self.bounds.expire(self._boot_first_sess)

    def maintain(self, *, force: bool = False) -> None:
        """Housekeeping at most every MAINTAIN_EVERY seconds: expiry, the end of the resend
        retention, giving freed pages back, a WAL checkpoint when idle (housekeeping.py)."""
        now = time.monotonic()
        if not force and now < self._next_maintain:
            return
        self._next_maintain = now + MAINTAIN_EVERY
        if self.fault is not None:
            return
        try:
            self.expire()
            housekeeping.tidy(self._db, self.path, self.tally,
                              retain_before=self._clock() - self.retain if self.retain else None,
                              idle=self.tally.queued == 0 and not self._pending)
        except sqlite3.Error as exc:
            self.disk.check(exc, "outbox maintenance failed")

    def _while_failing(self) -> None:
        """After each write the disk refused: bound memory; memory rows are publishable."""
        self.bounds.memory()
        if self._pending.publishable():
            self.committed.set()

    # -- clock ----------------------------------------------------------------------------------

    def clock_synced(self, offset: float) -> None:
        """The clock became real: correct the held stamps (`mono + offset`) at the next commit,
        those in memory at once; rows of an earlier boot cannot be corrected (restamp.py)."""
        self._pending.restamp(offset)
        self._restamp = offset
        self.signals.work.set()
        if self.fault is not None:
            self.committed.set()

    # -- reading and acknowledging --------------------------------------------------------------

    def peek(self, limit: int, *, hist_until: int = 0,
             hist_budget: int | None = None) -> list[Message]:
        """The next publishable messages in lane order (lanes.py), where telemetry up to
        `hist_until` (the backlog of an outage) takes at most `hist_budget` places."""
        out: list[Message] = []
        self.throttled = False
        for lane in lanes.LANES:
            need = limit - len(out)
            if need <= 0:
                break
            paced = lane.backlog is True and hist_budget is not None and hist_budget < need
            if paced:
                need = max(0, hist_budget or 0)
            try:
                # A paced lane asks for one row more: is backlog left behind for the pacer?
                rows = lanes.select(self._db, lane, limit=need + 1 if paced else need,
                                    hist_until=hist_until)
                if paced and len(rows) > need:
                    self.throttled = True
                    rows = rows[:need]
            except sqlite3.Error as exc:
                self.disk.check(exc, "outbox read failed")
                rows = []
            found = [r.message() for r in quarantine.decodable(
                self._db, rows, tally=self.tally, disk=self.disk, lost=self.bounds.lost)]
            if self.fault is not None and lane.backlog is not True:  # memory is never backlog
                found += self._pending.lane(lane.prio, skip=self.delivery.sent,
                                            hist_until=hist_until)
            out.extend(found[:need])
        if not out and not self.throttled:
            self.committed.clear()  # set again by the next commit
        return out[:limit]

    def ack(self, messages: Sequence[Message]) -> None:
        """The broker has these: never publish them again; the rows go with the next commit.

        Deleting in the batch transaction rather than at once halves the disk writes; after a
        crash in between, those messages are sent once more with their `mid` (at least once).
        With `release: backend` a PUBACK only marks them sent; `release_upto` releases them.
        """
        self.delivery.ack(messages)

    def release_upto(self, seq: int) -> int:
        """Backend mode: the backend stored everything up to `seq` (its watermark). The rows this
        process published (in this connection or an earlier one) up to `seq` are released; a row
        never published here is not, whatever the watermark says: a forged or stale watermark
        must not delete what the backend never received. Returns how many."""
        return self.delivery.release_upto(seq)

    def rewind(self) -> None:
        """A new connection: what was sent but never released goes out again (backend mode)."""
        self.delivery.rewind()

    def resend(self, first: int, last: int) -> dict[str, Any]:
        """buffer.resend: queue the retained (already delivered) rows of [first, last] again."""
        return self.delivery.resend(first, last)

    def shared_connection(self) -> sqlite3.Connection | None:
        """The outbox's own connection, for another table of the same file (the command answers),
        when it was opened on a full disk and a second connection cannot open the file; None
        when a connection of one's own works. Safe to share: every transaction here is
        synchronous, so none can interleave with another on the event loop."""
        return self._db if self.exclusive else None

    def last_committed_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]

    def depth(self) -> int:
        """Committed messages not yet acknowledged."""
        return self.tally.queued

    def stats(self) -> dict[str, Any]:
        try:
            figures = queue_figures(self._db)
        except sqlite3.Error as exc:  # an I/O error: the health message still goes out
            figures = Figures()
            self.disk.reason = self.disk.reason or medium_fault(exc) or str(exc)
        return report(self.tally, self._pending, figures, now=self._clock(),
                      next_seq=self._next_seq, max_bytes=self.max_bytes, release=self.release,
                      fault=self.fault, wear=self.wear, salvage=self.salvage)

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()
