"""The answers already given, by command id: what makes commands idempotent across restarts.

QoS 1 delivers at least once, and backends retry: the same id must never run twice. Each final
answer is written (synchronous=FULL) before it is published, with a digest of the request it
answers, so a replay of the same request gets the same answer and a different request reusing the
id gets `409`.

The table lives in the outbox's SQLite file (one file to back up, WAL allows a second connection)
but is only ever touched through this class. It is bounded: an entry is kept at least `retention`
seconds and at least until its command expires (so a signed command can never be replayed after
its answer was forgotten: once `exp` has passed, the expiry check rejects it anyway); beyond
`max_entries`, expired entries go first, and a hard cap ten times larger protects the disk.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from agent.durable import private_sqlite

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cmd_answers (
    id         TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,   -- sha256 of the canonical request, signature included
    exp        REAL NOT NULL,
    keep_until REAL NOT NULL,
    received   REAL NOT NULL,
    answer     TEXT NOT NULL    -- the JSON answer as published
);
CREATE INDEX IF NOT EXISTS cmd_answers_received ON cmd_answers (received);
"""


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
                 retention: float = 86400.0) -> None:
        self._db = db
        self.max_entries = max_entries
        self.retention = retention
        db.executescript(_SCHEMA)

    def get(self, cmd_id: str) -> tuple[str, dict[str, Any]] | None:
        row = self._db.execute("SELECT digest, answer FROM cmd_answers WHERE id = ?",
                               (cmd_id,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def put(self, cmd_id: str, digest: str, answer: dict[str, Any], *, exp: float,
            now: float) -> None:
        keep_until = max(exp, now + self.retention)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR REPLACE INTO cmd_answers VALUES (?,?,?,?,?,?)",
                             (cmd_id, digest, exp, keep_until, now,
                              json.dumps(answer, separators=(",", ":"))))
            self._prune(now)
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def update(self, cmd_id: str, answer: dict[str, Any]) -> bool:
        """Replace the cached answer of a command whose outcome came later (config.apply)."""
        cursor = self._db.execute("UPDATE cmd_answers SET answer = ? WHERE id = ?",
                                  (json.dumps(answer, separators=(",", ":")), cmd_id))
        return cursor.rowcount > 0

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM cmd_answers WHERE keep_until < ?", (now,))
        count = self._db.execute("SELECT COUNT(*) FROM cmd_answers").fetchone()[0]
        if count > self.max_entries:
            self._db.execute(
                "DELETE FROM cmd_answers WHERE id IN (SELECT id FROM cmd_answers WHERE exp < ? "
                "ORDER BY received LIMIT ?)", (now, count - self.max_entries))
        hard_cap = self.max_entries * 10
        count = self._db.execute("SELECT COUNT(*) FROM cmd_answers").fetchone()[0]
        if count > hard_cap:
            log.warning("command answer cache over %d entries of unexpired commands: dropping the "
                        "oldest (lower commands.max_ttl)", hard_cap)
            self._db.execute(
                "DELETE FROM cmd_answers WHERE id IN (SELECT id FROM cmd_answers "
                "ORDER BY received LIMIT ?)", (count - hard_cap,))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cmd_answers").fetchone()[0])
