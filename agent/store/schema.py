"""The outbox file: its tables, the pragmas it is opened with, the columns later versions added
(an older file is migrated in place, never rewritten), the transaction helper, and the few row
statements every part of the outbox shares (delete, and the in-memory skip table `peek` obeys).

The SQLite format is a contract with every gateway in the field: a database written by any
earlier version must open, and this layout must stay readable by `salvage` and the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.store.rows import COLUMNS, SIZE_SQL

SCHEMA = """
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
ALL_COLUMNS = (*COLUMNS.split(", "), "sent_at")  # what salvage carries over
_ADDED = {"mono": "REAL", "hold": "INTEGER NOT NULL DEFAULT 0", "sent_at": "REAL"}


def open_db(path: Path, *, exclusive: bool = False) -> sqlite3.Connection:
    """Connect in autocommit mode (transactions are explicit), set the pragmas, create or migrate
    the tables. Raises sqlite3.Error with the connection closed.

    `exclusive` is for a disk with no space left: the WAL index then lives in this process's
    memory instead of the -shm file SQLite could not grow, so the queue can still be read (and
    written once space is back); other processes cannot open the file until the agent stops."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        if exclusive:  # before the first access, or SQLite has already tried the -shm
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        _prepare(db)
    except sqlite3.Error:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection) -> None:
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
    db.executescript(SCHEMA)
    have = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
    for column, kind in _ADDED.items():  # a database written by an earlier version
        if column not in have:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
    # Delivered-but-not-deleted rows (and backend mode's sent rows) are skipped by `peek`
    # through this in-memory table, so a peek never scans them in Python.
    db.execute("CREATE TEMP TABLE IF NOT EXISTS skip (seq INTEGER PRIMARY KEY)")


def counts(db: sqlite3.Connection) -> tuple[int, int, int]:
    """Queued rows, bytes of all rows (the size bound counts retained ones too), retained rows."""
    rows, size, retained = db.execute(
        "SELECT COUNT(*) FILTER (WHERE sent_at IS NULL), "
        f"COALESCE(SUM({SIZE_SQL}), 0), "
        "COUNT(*) FILTER (WHERE sent_at IS NOT NULL) FROM outbox").fetchone()
    return rows, size, retained


def skip(db: sqlite3.Connection, seqs: list[int]) -> None:
    """Hide these rows from `peek` (delivered, sent, or set aside) until `unskip`."""
    db.executemany("INSERT OR IGNORE INTO temp.skip VALUES (?)", [(s,) for s in seqs])


def unskip(db: sqlite3.Connection, seqs: list[int]) -> None:
    db.executemany("DELETE FROM temp.skip WHERE seq = ?", [(s,) for s in seqs])


def delete(db: sqlite3.Connection, seqs: list[int]) -> None:
    db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])


def transaction(db: sqlite3.Connection) -> Tx:
    db.execute("BEGIN IMMEDIATE")
    return Tx(db)


class Tx:
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
