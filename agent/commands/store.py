"""The record of commands carried out, by id: what makes commands idempotent across restarts and
replays impossible while a command may still run.

QoS 1 delivers at least once, backends retry, and a retained message on `cmd/req` comes back at
every start: the same id must never run twice. Before an operation runs, its id is written as
`running` (synchronous=FULL); its final answer replaces that mark before it is published, with a
digest of the request, so a replay of the same request gets the same answer and a different
request reusing the id gets `409`. An id still `running` at the next start belongs to a command
that the agent did not survive (killed mid-way, out of memory): it is answered `failed`, never run
again, so a command that crashes the agent cannot do it in a loop.

Two classes of rows, because strangers must not be able to push out what protects the gateway:

- protected: signed commands and every command that changes something (unsigned ones only run
  with `commands.unsigned: allow`). Kept until their `exp` (plus the clock skew) has passed, and
  at least `retention`; never evicted by count. Their number is bounded by time (`max_ttl`) and
  by who can send them; past MAX_PROTECTED, new ones are refused (503) rather than old ones
  forgotten, so a replay can never slip through a full table.
- anonymous: the harmless commands anyone may send unsigned. At most `max_entries`, the oldest
  go first: losing one only means a repeated `ping` runs twice.

The table lives in the outbox's SQLite file (one file to back up, WAL allows a second connection)
but is only ever touched through this class.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.sdk.durable import private_sqlite

log = logging.getLogger(__name__)

MAX_PROTECTED = 100_000  # ~100 signed commands an hour for a max_ttl of 30 days: far beyond use

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cmd_answers (
    id         TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,   -- sha256 of the canonical request, signature included
    exp        REAL NOT NULL,
    keep_until REAL NOT NULL,
    received   REAL NOT NULL,
    answer     TEXT NOT NULL    -- the JSON answer as published ('' while running)
);
CREATE INDEX IF NOT EXISTS cmd_answers_received ON cmd_answers (received);
"""
_ADDED = {"protected": "INTEGER NOT NULL DEFAULT 1", "state": "TEXT NOT NULL DEFAULT 'done'",
          "op": "TEXT"}


class StoreFull(Exception):
    """MAX_PROTECTED unexpired protected commands are on record: refuse rather than forget."""


@dataclass(frozen=True, slots=True)
class Entry:
    digest: str
    answer: dict[str, Any] | None  # None while the command runs
    protected: bool


def connect(path: Path) -> sqlite3.Connection:
    """A connection of our own to the outbox file, with the outbox's durability settings."""
    private_sqlite(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class AnswerCache:
    def __init__(self, db: sqlite3.Connection, *, max_entries: int = 1000,
                 retention: float = 86400.0, skew: float = 60.0) -> None:
        self._db = db
        self.max_entries = max_entries
        self.retention = retention
        self.skew = skew
        db.executescript(_SCHEMA)
        have = {r[1] for r in db.execute("PRAGMA table_info(cmd_answers)")}
        for column, kind in _ADDED.items():  # a file written by an earlier version
            if column not in have:
                db.execute(f"ALTER TABLE cmd_answers ADD COLUMN {column} {kind}")

    def get(self, cmd_id: str) -> Entry | None:
        row = self._db.execute("SELECT digest, answer, protected, state FROM cmd_answers "
                               "WHERE id = ?", (cmd_id,)).fetchone()
        if row is None:
            return None
        return Entry(row[0], json.loads(row[1]) if row[3] == "done" else None, bool(row[2]))

    def begin(self, cmd_id: str, digest: str, *, op: str, exp: float, now: float,
              protected: bool) -> None:
        """Mark `cmd_id` running, on disk, before anything of it runs."""
        keep_until = max(exp + self.skew, now + self.retention) if protected else \
            now + self.retention
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._prune(now)
            if protected and self._count(1) >= MAX_PROTECTED:
                raise StoreFull
            self._db.execute(
                "INSERT OR REPLACE INTO cmd_answers (id, digest, exp, keep_until, received, "
                "answer, protected, state, op) VALUES (?,?,?,?,?,'',?,'running',?)",
                (cmd_id, digest, exp, keep_until, now, int(protected), op))
        except (sqlite3.Error, StoreFull):
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def finish(self, cmd_id: str, answer: dict[str, Any]) -> None:
        """The final answer of a command marked running (or a later outcome: config.apply)."""
        self._db.execute("UPDATE cmd_answers SET answer = ?, state = 'done' WHERE id = ?",
                         (json.dumps(answer, separators=(",", ":")), cmd_id))

    def update(self, cmd_id: str, answer: dict[str, Any]) -> bool:
        """Replace the cached answer of a command whose outcome came later (config.apply)."""
        cursor = self._db.execute("UPDATE cmd_answers SET answer = ?, state = 'done' WHERE id = ?",
                                  (json.dumps(answer, separators=(",", ":")), cmd_id))
        return cursor.rowcount > 0

    def interrupted(self) -> list[tuple[str, str | None]]:
        """The commands that were running when the previous agent stopped: (id, op)."""
        return [(r[0], r[1]) for r in self._db.execute(
            "SELECT id, op FROM cmd_answers WHERE state = 'running' ORDER BY received")]

    def _count(self, protected: int) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cmd_answers WHERE protected = ?",
                                    (protected,)).fetchone()[0])

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM cmd_answers WHERE keep_until < ? AND state = 'done'",
                         (now,))
        surplus = self._count(0) - self.max_entries + 1  # room for the one being added
        if surplus > 0:
            self._db.execute(
                "DELETE FROM cmd_answers WHERE id IN (SELECT id FROM cmd_answers WHERE "
                "protected = 0 AND state = 'done' ORDER BY received LIMIT ?)", (surplus,))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cmd_answers").fetchone()[0])
