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

Bounds: `max_bytes` (oldest telemetry goes first, never alarms or events) and optionally `max_age`
(measured on the monotonic clock within a boot, so a clock jump expires nothing). Both losses are
reported through `on_overflow` with the seq range.

A full, read-only or failing disk does not stop the agent: the rows stay in memory (bounded by
`memory_bytes`, oldest telemetry dropped first), become publishable from memory, the fault is
reported through `on_fault`, and every commit retries until the disk takes writes again.

Rows stamped while the wall clock was not real (a Pi without RTC at 1970) are held (`hold = 1`)
with their monotonic stamp and published only after `clock_synced` corrected their timestamps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.store import salvage as salvage_mod
from agent.store.diskguard import WearMeter, medium_fault
from agent.sdk.durable import private_sqlite
from agent.sdk.errors import StoreError
from agent.uplink.ids import uuid7
from agent.runtime.timesync import PLAUSIBLE_AFTER, TimeKeeper

log = logging.getLogger(__name__)

# Alarms overtake device events, which overtake boundary indexes, which overtake telemetry.
PRIO_ALARM = 0
PRIO_EVENT = 1
PRIO_TELEMETRY = 2
PRIO_INDEX = 3  # billing indexes (agent/billing): after events, before telemetry; never dropped

ROW_OVERHEAD = 64  # bytes of mid, seq, ts... per row on disk beside the body, for the size bound
MAINTAIN_EVERY = 5.0  # seconds between expiry, retention purge, checkpoint and vacuum passes

Release = Literal["puback", "backend"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY,
    prio    INTEGER NOT NULL,
    topic   TEXT    NOT NULL,   -- relative to the topic root, e.g. dev/vmc-b/tm
    retain  INTEGER NOT NULL,
    mid     TEXT    NOT NULL,
    sess    INTEGER NOT NULL,
    ts      REAL    NOT NULL,
    body    BLOB    NOT NULL,   -- JSON object merged into the envelope at publish time
    mono    REAL,               -- monotonic instant of ts (same boot as sess): corrections, age
    hold    INTEGER NOT NULL DEFAULT 0,  -- 1: stamped before the clock was real, not yet corrected
    sent_at REAL                -- set: delivered, kept only for buffer.resend
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (prio, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "seq, prio, topic, retain, mid, sess, ts, body, mono, hold"
_ALL_COLUMNS = (*_COLUMNS.split(", "), "sent_at")
_ADDED = {"mono": "REAL", "hold": "INTEGER NOT NULL DEFAULT 0", "sent_at": "REAL"}

Row = tuple[int, int, str, int, str, int, float, bytes, float | None, int]


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    prio: int
    topic: str
    retain: bool
    mid: str
    sess: int
    ts: float
    body: bytes

    def fields(self) -> dict[str, Any]:
        return json.loads(self.body)


def parse_watermark(payload: bytes) -> int | None:
    """The backend's `{root}/ack` message, `{"seq": N}`: it has stored everything up to N."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


class ResendUnavailable(Exception):
    """buffer.resend while the outbox keeps nothing it sent (`buffer.retain` unset)."""


def _size(row: Row) -> int:
    return len(row[7]) + len(row[2]) + ROW_OVERHEAD


def _message(row: Sequence[Any]) -> Message:
    return Message(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6], row[7])


def _decodes(row: Sequence[Any]) -> bool:
    """A stored row the uplink can publish: the right types and a JSON object as body."""
    seq, prio, topic, retain, mid, sess, ts, body = row[:8]
    if not (isinstance(seq, int) and isinstance(prio, int) and isinstance(topic, str)
            and isinstance(retain, int) and isinstance(mid, str) and isinstance(sess, int)
            and isinstance(ts, int | float) and isinstance(body, bytes)):
        return False
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:  # UnicodeDecodeError is one too
        return False


def _readings(prio: int, body: dict[str, Any]) -> int:
    records = body.get("e") if prio == PRIO_TELEMETRY else None
    return len(records) if isinstance(records, list) else 0


def shift_times(body: bytes, delta: float) -> bytes:
    """Move the absolute times inside a stored body by `delta` seconds: the SenML base time of the
    records and the `since`/`ts` of state and event bodies (relative times need nothing)."""
    doc = json.loads(body)
    for record in doc.get("e", []) if isinstance(doc.get("e"), list) else []:
        if isinstance(record, dict) and isinstance(record.get("bt"), int | float):
            record["bt"] = round(record["bt"] + delta, 3)
    for key in ("since", "ts"):
        if isinstance(doc.get(key), int | float) and not isinstance(doc.get(key), bool):
            doc[key] = round(doc[key] + delta, 3)
    return json.dumps(doc, separators=(",", ":")).encode()


class Outbox:
    """Durable FIFO per priority. One instance per process; all calls from the event loop."""

    def __init__(self, path: Path, *, max_bytes: int, commit_interval: float,
                 clock: Callable[[], float], max_age: float | None = None, retain: float = 0.0,
                 memory_bytes: int = 8 * 2**20, release: Release = "puback",
                 timekeeper: TimeKeeper | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self.max_age = max_age
        self.retain = retain
        self.memory_bytes = memory_bytes
        self.release = release
        self.time = timekeeper
        self._clock = clock
        # A file the card rotted is set aside and what it still holds carried over (salvage.py).
        damage = salvage_mod.check(path)
        self.salvage = (salvage_mod.salvage(path, damage, _SCHEMA, _ALL_COLUMNS)
                        if damage is not None else None)
        self.quarantined = 0  # rows that could not be decoded: set aside, never published
        private_sqlite(path)  # owner-only, with its -wal and -shm, whatever the umask
        self._db = sqlite3.connect(path, isolation_level=None)
        try:
            self._open()
        except sqlite3.Error as exc:  # at start the agent refuses to run on a broken store
            self._db.close()
            raise StoreError(f"cannot open the outbox {path}: {exc}") from exc
        self._pending: dict[int, Row] = {}  # memory: not committed yet (or the disk is failing)
        self._pending_bytes = 0
        self._acked: set[int] = set()  # delivered/released, deleted (or marked) at the next commit
        self._sent: set[int] = set()  # backend mode: PUBACKed, waiting for the backend's watermark
        # Backend mode: PUBACKed by this process and not released yet (kept across reconnections:
        # only these may a watermark release), and the highest seq ever PUBACKed here.
        self._published: set[int] = set()
        self.highest_published = 0
        self._meta_pending: dict[str, Any] = {}
        self._restamp: float | None = None  # clock offset to apply to held rows at next commit
        self.released_upto = 0
        self.throttled = False  # the last peek left backlog behind for the pacer
        self.emptied = asyncio.Event()  # set when everything committed was acknowledged
        self.committed = asyncio.Event()  # set whenever new rows become publishable
        self._has_pending = asyncio.Event()  # wakes the batch committer only when there is work
        if self._rows:
            self.committed.set()
        else:
            self.emptied.set()
        self.fault: str | None = None
        self.faults = 0
        self.dropped = 0
        self.expired = 0
        self.commits = 0
        self.checkpoints = 0
        self.vacuumed_pages = 0
        self.wear = WearMeter()
        self._next_maintain = time.monotonic() + MAINTAIN_EVERY
        self._boot_first_sess = self._boot_sessions()

    def _open(self) -> None:
        db = self._db
        if db.execute("PRAGMA page_count").fetchone()[0] == 0:
            # Only a new file can switch: freed pages go back to the file system in small steps
            # (incremental_vacuum) instead of a full VACUUM that rewrites the whole card.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on the medium when it returns, so a power cut keeps what was accepted.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_size_limit=4194304")  # a drained WAL shrinks back to 4 MiB
        db.execute("PRAGMA temp_store=MEMORY")  # the skip table never touches the card
        db.executescript(_SCHEMA)
        have = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        for column, kind in _ADDED.items():  # a database written by an earlier version
            if column not in have:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        # Delivered-but-not-deleted rows (and backend mode's sent rows) are skipped by `peek`
        # through this in-memory table, so a peek never scans them in Python.
        db.execute("CREATE TEMP TABLE IF NOT EXISTS skip (seq INTEGER PRIMARY KEY)")
        self._next_seq = int(self._meta("next_seq", "1"))
        last = db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        if last is not None and last >= self._next_seq:  # a counter row lost by an older version
            self._next_seq = last + 1
        self._rows, self._bytes, self._retained = db.execute(
            "SELECT COUNT(*) FILTER (WHERE sent_at IS NULL), "
            f"COALESCE(SUM(LENGTH(body) + LENGTH(topic) + {ROW_OVERHEAD}), 0), "
            "COUNT(*) FILTER (WHERE sent_at IS NOT NULL) FROM outbox").fetchone()

    def _boot_sessions(self) -> int:
        """The first session of the current boot: rows of sessions from it on have monotonic
        stamps comparable with ours (an agent restart keeps the boot, a power cut does not)."""
        if self.time is None:
            return 1 << 62
        stored = self._meta("boot", "")
        boot, _, first = stored.partition(":")
        if boot == self.time.boot and first:
            return int(first)
        return int(self._meta("sess", "0")) + 1  # this start is the first of a new boot

    # -- session and small persistent values ---------------------------------------------------

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def get_meta(self, key: str) -> Any:
        return json.loads(self._meta(key, "null"))

    def meta_items(self, low: str, high: str, limit: int = 10_000) -> list[tuple[str, Any]]:
        """Committed meta values with low <= key < high, in key order (billing's history)."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ? "
                                "ORDER BY key LIMIT ?", (low, high, limit)).fetchall()
        return [(key, json.loads(value)) for key, value in rows]

    def stage_meta(self, values: dict[str, Any]) -> None:
        """Store these meta values with the next batch commit (state that may lag a second)."""
        self._meta_pending.update(values)
        self._has_pending.set()

    def next_session(self) -> int:
        """The session counter: one more at every start, persisted at once (with the boot)."""
        session = int(self._meta("sess", "0")) + 1
        boot = f"{self.time.boot}:{self._boot_first_sess}" if self.time else ""
        try:
            with self._transaction():
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('sess', ?)", (str(session),))
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (boot,))
        except sqlite3.Error as exc:
            reason = medium_fault(exc)
            if reason is None:
                raise StoreError(f"outbox: cannot store the session: {exc}") from exc
            # Start anyway; the counter goes to disk with the first commit that succeeds.
            self._meta_pending["sess"] = session
            self._enter_fault(reason)
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
        mid = mid or uuid7(stamp)
        payload = json.dumps(body, separators=(",", ":")).encode()
        mono = self.time.mono_of(stamp) if self.time else None
        hold = 0 if self.time is None or self.time.synced() else 1
        row: Row = (seq, prio, topic, int(retain), mid, sess, stamp, payload, mono, hold)
        self._pending[seq] = row
        self._pending_bytes += _size(row)
        self.wear.readings += _readings(prio, body)
        if meta:
            self._meta_pending.update(meta)
        if prio != PRIO_TELEMETRY or meta:
            self.commit()
        else:
            self._has_pending.set()
        if self.fault is not None:
            self._bound_memory()
            if not hold:
                self.committed.set()  # from memory while the disk is failing
        return seq, mid

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self, meta: dict[str, Any] | None = None) -> bool:
        """One transaction: the pending rows in, the acknowledged rows out, `meta` values, and the
        clock correction of held rows. False when the disk refused it (rows kept in memory)."""
        if meta:
            self._meta_pending.update(meta)
        if not (self._pending or self._acked or self._meta_pending
                or self._restamp is not None):
            return True
        rows = list(self._pending.values())
        acked = sorted(self._acked)
        metas = dict(self._meta_pending)
        restamp = self._restamp
        try:
            with self._transaction():
                self._db.executemany(f"INSERT INTO outbox ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                     rows)
                if self.retain:
                    now = self._clock()
                    self._db.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?",
                                         [(now, s) for s in acked])
                else:
                    self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in acked])
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)",
                                 (str(self._next_seq),))
                for key, value in metas.items():
                    if value is None:
                        self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
                        continue
                    text = str(value) if key == "sess" else json.dumps(value)
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))
                restamped = self._apply_restamp(restamp) if restamp is not None else 0
        except sqlite3.Error as exc:
            reason = medium_fault(exc)
            if reason is None:
                raise StoreError(f"outbox commit failed: {exc}") from exc
            self._has_pending.set()  # the committer tries again at its next turn
            self._enter_fault(reason)
            return False
        for row in rows:
            self._pending.pop(row[0], None)
        self._pending_bytes = sum(_size(r) for r in self._pending.values())
        self._acked.difference_update(acked)
        self._db.executemany("DELETE FROM temp.skip WHERE seq = ?", [(s,) for s in acked])
        for key in metas:
            self._meta_pending.pop(key, None)
        if restamp is not None and self._restamp == restamp:
            self._restamp = None
        if not self._pending and not self._acked:
            self._has_pending.clear()
        self.commits += 1
        added = sum(_size(r) for r in rows)
        self._bytes += added
        self._rows += len(rows)
        if self.retain:
            self._retained += len(acked)
        if rows or restamped:
            self.emptied.clear()
            self.committed.set()
        if self.fault is not None:
            self._leave_fault()
        if self._bytes > self.max_bytes:
            self._drop_for_space()
        return True

    async def commit_periodically(self) -> None:
        """Batch telemetry: one transaction per `commit_interval` at most, none while idle; the
        housekeeping (expiry, retention, checkpoint, vacuum) rides on the same wake-ups."""
        while True:
            try:
                async with asyncio.timeout(MAINTAIN_EVERY):
                    await self._has_pending.wait()
            except TimeoutError:
                pass
            await asyncio.sleep(self.commit_interval)
            self.commit()
            self.maintain()

    def _transaction(self) -> _Tx:
        self._db.execute("BEGIN IMMEDIATE")
        return _Tx(self._db)

    # -- bounds ---------------------------------------------------------------------------------

    def _drop_for_space(self) -> None:
        """Make room: delivered rows kept for resend first, then the oldest telemetry, never
        alarms or events; report the telemetry that went."""
        target = int(self.max_bytes * 0.9)
        over = self._bytes - target
        freed = 0
        retained: list[int] = []
        if self._retained:
            for seq, size in self._db.execute(
                    "SELECT seq, LENGTH(body) + LENGTH(topic) + ? FROM outbox "
                    "WHERE sent_at IS NOT NULL ORDER BY sent_at, seq", (ROW_OVERHEAD,)):
                if freed >= over:
                    break
                retained.append(seq)
                freed += size
        victims: list[int] = []
        if freed < over:
            for seq, size in self._db.execute(
                    "SELECT seq, LENGTH(body) + LENGTH(topic) + ? FROM outbox WHERE prio = ? "
                    "AND sent_at IS NULL AND seq NOT IN (SELECT seq FROM temp.skip) "
                    "ORDER BY seq", (ROW_OVERHEAD, PRIO_TELEMETRY)):
                if freed >= over:
                    break
                victims.append(seq)
                freed += size
        if not victims and not retained:
            return
        if not self._delete(retained + victims, f"{len(victims)} dropped for space"):
            return
        self._bytes -= freed
        self._retained -= len(retained)
        self._rows -= len(victims)
        if victims:
            self._report_loss(victims, "max_mb")

    def _delete(self, seqs: list[int], what: str) -> bool:
        try:
            with self._transaction():
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
        except sqlite3.Error as exc:
            self._medium_fault_or_raise(exc, f"outbox: {what}")
            return False
        return True

    def _report_loss(self, seqs: list[int], reason: str) -> None:
        self.dropped += len(seqs)
        if self._rows == 0 and not self._pending:
            self.emptied.set()
        self.on_overflow(seqs[0], seqs[-1], len(seqs), reason)

    def on_overflow(self, first: int, last: int, count: int, reason: str = "max_mb") -> None:
        """Hook: the agent publishes a `buffer.overflow` event from here."""
        log.warning("outbox: dropped %d telemetry messages (seq %d..%d, %s)", count, first, last,
                    reason)

    def _bound_memory(self) -> None:
        """While the disk fails, memory holds the newest rows: oldest telemetry goes first."""
        if self._pending_bytes <= self.memory_bytes:
            return
        victims: list[int] = []
        for seq, row in self._pending.items():
            if self._pending_bytes <= int(self.memory_bytes * 0.9):
                break
            if row[1] == PRIO_TELEMETRY:
                victims.append(seq)
                self._pending_bytes -= _size(row)
        for seq in victims:
            del self._pending[seq]
        if victims:
            self._report_loss(victims, "memory")

    def expire(self) -> None:
        """Drop telemetry older than `max_age`. Within the current boot the age is monotonic (a
        clock jump expires nothing); older rows use their corrected wall time. Never while the
        clock is not real, never alarms or events, never rows waiting for a clock correction."""
        if not self.max_age or (self.time is not None and not self.time.synced()):
            return
        now_wall = self._clock()
        now_mono = self.time.clock.monotonic() if self.time else 0.0
        rows = self._db.execute(
            "SELECT seq, LENGTH(body) + LENGTH(topic) + ? FROM outbox WHERE prio = ? AND hold = 0 "
            "AND sent_at IS NULL AND seq NOT IN (SELECT seq FROM temp.skip) AND ("
            "(sess >= ? AND mono IS NOT NULL AND mono < ?) OR "
            "((sess < ? OR mono IS NULL) AND ts < ?)) ORDER BY seq",
            (ROW_OVERHEAD, PRIO_TELEMETRY, self._boot_first_sess, now_mono - self.max_age,
             self._boot_first_sess, now_wall - self.max_age)).fetchall()
        if not rows or not self._delete([r[0] for r in rows], "expiry"):
            return
        self._bytes -= sum(r[1] for r in rows)
        self._rows -= len(rows)
        self.expired += len(rows)
        self._report_loss([r[0] for r in rows], "max_age")

    def maintain(self, *, force: bool = False) -> None:
        """Housekeeping at most every MAINTAIN_EVERY seconds: expiry, the end of the resend
        retention, a WAL checkpoint when idle, and giving freed pages back in small steps."""
        now = time.monotonic()
        if not force and now < self._next_maintain:
            return
        self._next_maintain = now + MAINTAIN_EVERY
        if self.fault is not None:
            return
        try:
            self.expire()
            if self.retain and self._retained:
                gone = self._db.execute("DELETE FROM outbox WHERE sent_at < ? RETURNING "
                                        f"LENGTH(body) + LENGTH(topic) + {ROW_OVERHEAD}",
                                        (self._clock() - self.retain,)).fetchall()
                self._bytes -= sum(r[0] for r in gone)
                self._retained -= len(gone)
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            if free >= 256 and free * 4 >= pages:  # a drained backlog left a quarter empty
                # executescript steps the pragma to the end; execute() frees one page only.
                self._db.executescript(f"PRAGMA incremental_vacuum({int(free)});")
                self.vacuumed_pages += free
            wal = self.path.with_name(self.path.name + "-wal")
            if self._rows == 0 and not self._pending and wal.exists() and wal.stat().st_size:
                # Idle: fold the WAL into the database and truncate it, so a reader (the CLI,
                # a backup) finds one file and the next burst starts a fresh WAL.
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                self.checkpoints += 0 if busy else 1
        except sqlite3.Error as exc:
            self._medium_fault_or_raise(exc, "outbox maintenance failed")

    # -- disk faults ----------------------------------------------------------------------------

    def _medium_fault_or_raise(self, exc: sqlite3.Error, doing: str) -> None:
        """A failing medium (diskguard.medium_fault) puts the outbox in fault; any other error
        (a bug, a damaged file) must not be hidden: StoreError `doing: exc`."""
        reason = medium_fault(exc)
        if reason is None:
            raise StoreError(f"{doing}: {exc}") from exc
        self._enter_fault(reason)

    def _enter_fault(self, reason: str) -> None:
        first = self.fault is None
        self.fault = reason
        if first:
            self.faults += 1
            log.error("outbox: the disk refuses writes (%s): holding up to %d bytes in memory",
                      reason, self.memory_bytes)
            self.on_fault(reason)
        self._bound_memory()
        if any(r[9] == 0 for r in self._pending.values()):
            self.committed.set()  # memory rows are publishable while the disk fails

    def _leave_fault(self) -> None:
        reason, self.fault = self.fault, None
        log.warning("outbox: the disk takes writes again (was: %s)", reason)
        self.on_fault(None)

    def on_fault(self, reason: str | None) -> None:
        """Hook: the agent reports `buffer.fault` / `buffer.restored` on `evt` from here."""

    # -- clock ----------------------------------------------------------------------------------

    def clock_synced(self, offset: float) -> None:
        """The clock became real: correct the held stamps (`mono + offset`) at the next commit,
        those in memory at once; rows of an earlier boot cannot be corrected (see _apply)."""
        for seq, row in list(self._pending.items()):
            if row[9]:
                self._pending[seq] = self._corrected(row, offset, same_boot=True)
        self._restamp = offset
        self._has_pending.set()
        if self.fault is not None:
            self.committed.set()

    def _corrected(self, row: Row, offset: float, *, same_boot: bool) -> Row:
        if same_boot and row[8] is not None:
            new_ts = row[8] + offset
        elif row[6] >= PLAUSIBLE_AFTER:
            new_ts = row[6]  # from an earlier boot: keep what the clock said, flagged uncertain
        else:
            # An earlier boot at 1970: the reading happened before this boot began; that bound
            # (boot time = offset, since the monotonic clock counts from boot) beats 1970.
            new_ts = offset
        delta = new_ts - row[6]
        return (*row[:6], round(new_ts, 3), shift_times(row[7], delta), row[8], 0)  # type: ignore[return-value]

    def _apply_restamp(self, offset: float) -> int:
        held = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE hold = 1").fetchall()
        fixed = [self._corrected(tuple(r), offset,  # type: ignore[arg-type]
                                 same_boot=r[5] >= self._boot_first_sess) for r in held]
        self._db.executemany("UPDATE outbox SET ts = ?, body = ?, hold = 0 WHERE seq = ?",
                             [(r[6], r[7], r[0]) for r in fixed])
        return len(fixed)

    # -- reading and acknowledging --------------------------------------------------------------

    def peek(self, limit: int, *, hist_until: int = 0,
             hist_budget: int | None = None) -> list[Message]:
        """The next publishable messages: alarms, events, then telemetry by seq, where telemetry
        up to `hist_until` (the backlog of an outage) takes at most `hist_budget` places."""
        out: list[Message] = []
        self.throttled = False
        lanes: list[tuple[int, str, tuple[int, ...]]] = [
            (PRIO_ALARM, "", ()), (PRIO_EVENT, "", ()), (PRIO_INDEX, "", ()),
            (PRIO_TELEMETRY, "AND seq <= ?", (hist_until,)),
            (PRIO_TELEMETRY, "AND seq > ?", (hist_until,))]
        for index, (prio, cond, extra) in enumerate(lanes):
            need = limit - len(out)
            if need <= 0:
                break
            paced = index == 3 and hist_budget is not None and hist_budget < need
            if paced:
                need = max(0, hist_budget or 0)
            try:
                # A paced lane asks for one row more: is backlog left behind for the pacer?
                rows = self._db.execute(
                    "SELECT seq, prio, topic, retain, mid, sess, ts, body FROM outbox "
                    f"WHERE prio = ? AND hold = 0 AND sent_at IS NULL {cond} "
                    "AND seq NOT IN (SELECT seq FROM temp.skip) ORDER BY seq LIMIT ?",
                    (prio, *extra, need + 1 if paced else need)).fetchall()
                if paced and len(rows) > need:
                    self.throttled = True
                    rows = rows[:need]
            except sqlite3.Error as exc:
                self._medium_fault_or_raise(exc, "outbox read failed")
                rows = []
            lane = [_message(r) for r in self._decodable(rows)]
            if self.fault is not None and index != 3:  # memory rows are never backlog
                lane += [_message(r) for r in self._pending.values()
                         if r[1] == prio and not r[9] and r[0] not in self._sent
                         and (prio != PRIO_TELEMETRY or r[0] > hist_until)]
            out.extend(lane[:need])
        if not out and not self.throttled:
            self.committed.clear()  # set again by the next commit
        return out[:limit]

    def _decodable(self, rows: list[Any]) -> list[Any]:
        """The rows that decode; the others (a rotted page, two flipped bytes) are moved to the
        quarantine table, counted and reported as lost, never offered again."""
        # A body stored as TEXT (a hand-made or older file) is the same JSON: take it as bytes.
        rows = [(*r[:7], r[7].encode(), *r[8:]) if isinstance(r[7], str) else r for r in rows]
        bad = [row for row in rows if not _decodes(row)]
        if not bad:
            return rows
        seqs = [row[0] for row in bad if isinstance(row[0], int)]
        log.error("outbox: %d row(s) that cannot be decoded set aside: seq %s", len(bad), seqs)
        try:
            with self._transaction():
                self._db.execute("CREATE TABLE IF NOT EXISTS quarantine AS SELECT * FROM outbox "
                                 "WHERE 0")
                self._db.executemany("INSERT INTO quarantine SELECT * FROM outbox WHERE seq = ?",
                                     [(s,) for s in seqs])
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
        except sqlite3.Error as exc:
            self._medium_fault_or_raise(exc, "outbox: cannot set rows aside")
        # Skipped from now on even if the disk refused the move: never retried forever.
        self._db.executemany("INSERT OR IGNORE INTO temp.skip VALUES (?)", [(s,) for s in seqs])
        self.quarantined += len(bad)
        self._rows = max(0, self._rows - len(bad))
        if seqs:
            self._report_loss(seqs, "quarantined")
        return [row for row in rows if _decodes(row)]

    def ack(self, messages: Sequence[Message]) -> None:
        """The broker has these: never publish them again; the rows go with the next commit.

        Deleting in the batch transaction rather than at once halves the disk writes; after a
        crash in between, those messages are sent once more with their `mid` (at least once).
        With `release: backend` a PUBACK only marks them sent; `release_upto` releases them.
        """
        if self.release == "backend":
            self._mark_sent(messages)
            return
        self._release(messages)

    def _release(self, messages: Sequence[Message]) -> None:
        fresh: list[int] = []
        for message in messages:
            if message.seq in self._pending:  # delivered from memory while the disk failed
                row = self._pending.pop(message.seq)
                self._pending_bytes -= _size(row)
                continue
            if message.seq not in self._acked:
                self._acked.add(message.seq)
                self._sent.discard(message.seq)
                self._published.discard(message.seq)
                fresh.append(message.seq)
                self._rows -= 1
                if not self.retain:
                    self._bytes -= len(message.body) + len(message.topic) + ROW_OVERHEAD
        self._db.executemany("INSERT OR IGNORE INTO temp.skip VALUES (?)", [(s,) for s in fresh])
        if messages:
            self._has_pending.set()
        if self._rows == 0 and not self._pending:
            self.emptied.set()

    def _mark_sent(self, messages: Sequence[Message]) -> None:
        fresh = [m.seq for m in messages if m.seq not in self._sent and m.seq not in self._acked]
        self._sent.update(fresh)
        self._published.update(fresh)
        self.highest_published = max([self.highest_published, *fresh])
        self._db.executemany("INSERT OR IGNORE INTO temp.skip VALUES (?)", [(s,) for s in fresh])

    def release_upto(self, seq: int) -> int:
        """Backend mode: the backend stored everything up to `seq` (its watermark). The rows this
        process published (in this connection or an earlier one) up to `seq` are released; a row
        never published here is not, whatever the watermark says: a forged or stale watermark
        must not delete what the backend never received. Returns how many."""
        self.released_upto = max(self.released_upto, seq)
        covered = [s for s in self._published if s <= seq]
        if not covered:
            return 0
        rows = {r[0]: r for r in self._db.execute(
            "SELECT seq, prio, topic, retain, mid, sess, ts, body FROM outbox WHERE seq IN "
            f"(SELECT value FROM json_each(?)) AND sent_at IS NULL", (json.dumps(covered),))}
        messages = [_message(rows[s]) for s in covered if s in rows and s not in self._acked]
        messages += [_message(self._pending[s]) for s in covered if s in self._pending]
        self._published.difference_update(covered)
        self._release(messages)
        return len(messages)

    def rewind(self) -> None:
        """A new connection: what was sent but never released goes out again (backend mode)."""
        if self._sent:
            self._db.executemany("DELETE FROM temp.skip WHERE seq = ?",
                                 [(s,) for s in self._sent])
            self._sent.clear()
            self.committed.set()

    def resend(self, first: int, last: int) -> dict[str, Any]:
        """buffer.resend: queue the retained (already delivered) rows of [first, last] again."""
        if not self.retain:
            raise ResendUnavailable
        cur = self._db.execute("UPDATE outbox SET sent_at = NULL WHERE seq BETWEEN ? AND ? "
                               "AND sent_at IS NOT NULL", (first, last))
        count = cur.rowcount
        waiting = self._db.execute("SELECT COUNT(*) FROM outbox WHERE seq BETWEEN ? AND ? AND "
                                   "sent_at IS NULL", (first, last)).fetchone()[0] - count
        low, high = self._db.execute("SELECT MIN(seq), MAX(seq) FROM outbox WHERE sent_at IS "
                                     "NOT NULL").fetchone()
        self._retained -= count
        self._rows += count
        if count:
            self.emptied.clear()
            self.committed.set()
        return {"resent": count, "already_queued": waiting,
                "retained": {"first_seq": low, "last_seq": high}}

    def last_committed_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]

    def depth(self) -> int:
        """Committed messages not yet acknowledged."""
        return self._rows

    def stats(self) -> dict[str, Any]:
        try:
            row = self._db.execute("SELECT COUNT(*), MIN(ts), MIN(seq), MAX(seq) FROM outbox "
                                   "WHERE sent_at IS NULL").fetchone()
            by_prio = dict(self._db.execute("SELECT prio, COUNT(*) FROM outbox WHERE sent_at IS "
                                            "NULL GROUP BY prio"))
            held = self._db.execute("SELECT COUNT(*) FROM outbox WHERE hold = 1").fetchone()[0]
        except sqlite3.Error as exc:  # an I/O error: the health message still goes out
            row, by_prio, held = (0, None, None, None), {}, 0
            self.fault = self.fault or medium_fault(exc) or str(exc)
        oldest = row[1]
        return {
            "depth": self._rows + len(self._pending),
            "committed": self._rows,
            "pending": len(self._pending),
            "alarms": by_prio.get(PRIO_ALARM, 0),
            "events": by_prio.get(PRIO_EVENT, 0),
            "telemetry": by_prio.get(PRIO_TELEMETRY, 0),
            "indexes": by_prio.get(PRIO_INDEX, 0),
            # a clock set back makes the newest rows look "from the future": an age is never negative
            "oldest_age": max(0.0, round(self._clock() - oldest, 3)) if oldest is not None else 0,
            "first_seq": row[2],
            "last_seq": row[3],
            "next_seq": self._next_seq,
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "dropped": self.dropped,
            "expired": self.expired,
            "retained": self._retained,
            "held_for_clock": held + sum(1 for r in self._pending.values() if r[9]),
            "release": self.release,
            "fault": self.fault,
            "faults": self.faults,
            "memory_bytes": self._pending_bytes,
            "commits": self.commits,
            "checkpoints": self.checkpoints,
            "write_bytes": self.wear.written(),
            "write_bytes_per_1000_readings": self.wear.per_1000(),
            "quarantined": self.quarantined,
            "salvage": self.salvage.as_dict() if self.salvage is not None else None,
        }

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()


class _Tx:
    """COMMIT on success, ROLLBACK on error (sqlite3's own context manager needs autocommit off).

    After SQLITE_FULL or an I/O error SQLite may already have rolled back by itself; a second
    ROLLBACK would raise and hide the first error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")
