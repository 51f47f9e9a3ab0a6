"""The outbox's slow chores, run at most every MAINTAIN_EVERY seconds on the committer's
wake-ups: the end of the resend retention, giving freed pages back to the file system in small
steps, and folding the WAL into the database when the queue is idle. Expiry (bounds.expired)
rides on the same pass."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.store.rows import SIZE_SQL
from agent.store.tally import Tally

MAINTAIN_EVERY = 5.0  # seconds between expiry, retention purge, checkpoint and vacuum passes


def purge_retained(db: sqlite3.Connection, before: float) -> list[int]:
    """Delete the delivered rows kept for resend since before `before`; their sizes."""
    gone = db.execute(f"DELETE FROM outbox WHERE sent_at < ? RETURNING {SIZE_SQL}",
                      (before,)).fetchall()
    return [size for (size,) in gone]


def give_back_pages(db: sqlite3.Connection) -> int:
    """When a drained backlog left a quarter of the file empty, return those pages; how many."""
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    if free >= 256 and free * 4 >= pages:
        # executescript steps the pragma to the end; execute() frees one page only.
        db.executescript(f"PRAGMA incremental_vacuum({int(free)});")
        return free
    return 0


def checkpoint(db: sqlite3.Connection, path: Path) -> bool:
    """Fold the WAL into the database and truncate it, so a reader (the CLI, a backup) finds one
    file and the next burst starts a fresh WAL. Call when idle; True when it was done."""
    wal = path.with_name(path.name + "-wal")
    if not (wal.exists() and wal.stat().st_size):
        return False
    busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return not busy


def tidy(db: sqlite3.Connection, path: Path, tally: Tally, *, retain_before: float | None,
         idle: bool) -> None:
    """One pass (after expiry): retention, pages, checkpoint. Raises sqlite3.Error."""
    if retain_before is not None and tally.retained:
        gone = purge_retained(db, retain_before)
        tally.bytes -= sum(gone)
        tally.retained -= len(gone)
    tally.vacuumed_pages += give_back_pages(db)
    if idle:
        tally.checkpoints += checkpoint(db, path)
