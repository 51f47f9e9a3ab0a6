"""The store-and-forward outbox: the single path from the agent to the broker.

    enqueue ──► pending (memory, seq+mid assigned) ──commit──► SQLite (WAL) ──peek──► uplink
                      ▲ alarms commit at once;                      │
                      └ telemetry at most every commit_interval     └──ack (PUBACK ok)──► delete

Telemetry is committed in batches so an SD card sees about one write a second; alarms and device
events are committed before `enqueue` returns. Only committed rows are ever published, so what the
broker has seen is always on disk first, and a SIGKILL can only lose what was never published.
`seq` comes from a counter stored in the same transaction as the rows: it never goes back, and a
restart continues it without holes in what was committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from agent.ids import uuid7

log = logging.getLogger(__name__)

# Lower goes first. Alarms overtake device events, which overtake buffered telemetry.
PRIO_ALARM = 0
PRIO_EVENT = 1
PRIO_TELEMETRY = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq    INTEGER PRIMARY KEY,
    prio   INTEGER NOT NULL,
    topic  TEXT    NOT NULL,   -- relative to the topic root, e.g. dev/vmc-b/tm
    retain INTEGER NOT NULL,
    mid    TEXT    NOT NULL,
    sess   INTEGER NOT NULL,
    ts     REAL    NOT NULL,
    body   BLOB    NOT NULL    -- JSON object merged into the envelope at publish time
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (prio, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


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


class Outbox:
    """Durable FIFO per priority. One instance per process; all calls from the event loop."""

    def __init__(self, path: Path, *, max_bytes: int, commit_interval: float,
                 clock: Callable[[], float]) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on the medium when it returns, so a power cut keeps what was accepted.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._pending: list[tuple[Any, ...]] = []
        self._acked: set[int] = set()  # published and acknowledged, deleted at the next commit
        self._next_seq = int(self._meta("next_seq", "1"))
        last = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        if last is not None and last >= self._next_seq:  # a counter row lost by an older version
            self._next_seq = last + 1
        self._bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM outbox"
                                       ).fetchone()[0]
        self._rows = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self.emptied = asyncio.Event()  # set when everything committed was acknowledged
        self.committed = asyncio.Event()  # set whenever new rows become publishable
        self._has_pending = asyncio.Event()  # wakes the batch committer only when there is work
        if self._rows:
            self.committed.set()
        else:
            self.emptied.set()
        self.dropped = 0
        self.commits = 0

    # -- session and small persistent values ---------------------------------------------------

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def get_meta(self, key: str) -> Any:
        return json.loads(self._meta(key, "null"))

    def next_session(self) -> int:
        """The session counter: one more at every start, persisted at once."""
        session = int(self._meta("sess", "0")) + 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('sess', ?)", (str(session),))
        return session

    # -- writing --------------------------------------------------------------------------------

    def enqueue(self, topic: str, body: dict[str, Any], *, prio: int, sess: int,
                retain: bool = False, ts: float | None = None,
                meta: dict[str, Any] | None = None) -> tuple[int, str]:
        """Accept one message; alarms and events (prio < telemetry) are committed before return.

        `meta` values are stored in the same transaction (e.g. the rule engine's alarm state, so an
        alarm and the state that says it was raised can never disagree after a crash).
        """
        seq = self._next_seq
        self._next_seq += 1
        mid = uuid7(ts)
        payload = json.dumps(body, separators=(",", ":")).encode()
        self._pending.append((seq, prio, topic, int(retain), mid, sess,
                              self._clock() if ts is None else ts, payload))
        if prio < PRIO_TELEMETRY or meta:
            self.commit(meta)
        else:
            self._has_pending.set()
        return seq, mid

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self, meta: dict[str, Any] | None = None) -> None:
        """One transaction: the pending rows in, the acknowledged rows out, `meta` values."""
        if not self._pending and not self._acked and not meta:
            return
        rows, self._pending = self._pending, []
        acked, self._acked = self._acked, set()
        self._has_pending.clear()
        try:
            with self._transaction():
                self._db.executemany("INSERT INTO outbox VALUES (?,?,?,?,?,?,?,?)", rows)
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in acked])
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)",
                                 (str(self._next_seq),))
                for key, value in (meta or {}).items():
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                     (key, json.dumps(value)))
        except sqlite3.Error as exc:
            self._pending = rows + self._pending  # keep them: the next commit tries again
            self._acked |= acked
            self._has_pending.set()
            raise StoreError(f"outbox commit failed: {exc}") from exc
        self.commits += 1
        self._bytes += sum(len(row[7]) for row in rows)
        self._rows += len(rows)
        if rows:
            self.emptied.clear()
            self.committed.set()
        if self._bytes > self.max_bytes:
            self._drop_oldest_telemetry()

    async def commit_periodically(self) -> None:
        """Batch telemetry: one transaction per `commit_interval` at most, none while idle."""
        while True:
            await self._has_pending.wait()
            await asyncio.sleep(self.commit_interval)
            self.commit()

    def _transaction(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return _Tx(self._db)  # type: ignore[return-value]

    def _drop_oldest_telemetry(self) -> None:
        """Make room: oldest telemetry first, never alarms or events; report what went."""
        target = int(self.max_bytes * 0.9)
        over = self._bytes - target
        rows = self._db.execute(
            "SELECT seq, LENGTH(body) FROM outbox WHERE prio = ? ORDER BY seq",
            (PRIO_TELEMETRY,)).fetchall()
        victims: list[int] = []
        freed = 0
        for seq, size in rows:
            if freed >= over:
                break
            if seq in self._acked:
                continue
            victims.append(seq)
            freed += size
        if not victims:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in victims])
        self._bytes -= freed
        self._rows -= len(victims)
        self.dropped += len(victims)
        self.on_overflow(victims[0], victims[-1], len(victims))

    def on_overflow(self, first: int, last: int, count: int) -> None:
        """Hook: the agent publishes a `buffer.overflow` event from here."""
        log.warning("outbox full: dropped %d telemetry messages (seq %d..%d)", count, first, last)

    # -- reading and acknowledging --------------------------------------------------------------

    def peek(self, limit: int) -> list[Message]:
        """The next committed, unacknowledged messages in delivery order (priority, then seq)."""
        rows = self._db.execute(
            "SELECT seq, prio, topic, retain, mid, sess, ts, body FROM outbox "
            "ORDER BY prio, seq LIMIT ?", (limit + len(self._acked),)).fetchall()
        out = [Message(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7]) for r in rows
               if r[0] not in self._acked]
        if not out:
            self.committed.clear()  # set again by the next commit
        return out[:limit]

    def ack(self, messages: Sequence[Message]) -> None:
        """The broker has these: never publish them again; the rows go with the next commit.

        Deleting in the batch transaction rather than at once halves the disk writes; after a
        crash in between, those messages are sent once more with their `mid` (at least once).
        """
        for message in messages:
            if message.seq not in self._acked:
                self._acked.add(message.seq)
                self._rows -= 1
                self._bytes -= len(message.body)
        if messages:
            self._has_pending.set()
        if self._rows == 0 and not self._pending:
            self.emptied.set()

    def last_committed_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]

    def depth(self) -> int:
        """Committed messages not yet acknowledged."""
        return self._rows

    def stats(self) -> dict[str, Any]:
        row = self._db.execute("SELECT COUNT(*), MIN(ts), MIN(seq), MAX(seq) FROM outbox"
                               ).fetchone()
        by_prio = dict(self._db.execute("SELECT prio, COUNT(*) FROM outbox GROUP BY prio"))
        oldest = row[1]
        return {
            "depth": self._rows + len(self._pending),
            "committed": self._rows,
            "pending": len(self._pending),
            "alarms": by_prio.get(PRIO_ALARM, 0),
            "events": by_prio.get(PRIO_EVENT, 0),
            "telemetry": by_prio.get(PRIO_TELEMETRY, 0),
            "oldest_age": round(self._clock() - oldest, 3) if oldest is not None else 0,
            "first_seq": row[2],
            "last_seq": row[3],
            "next_seq": self._next_seq,
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "dropped": self.dropped,
        }

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()


class _Tx:
    """COMMIT on success, ROLLBACK on error (sqlite3's own context manager needs autocommit off)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
