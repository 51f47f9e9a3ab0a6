"""Rows that cannot be decoded (a rotted page, two flipped bytes) are moved to the `quarantine`
table (same columns as `outbox`, created on first use), counted and reported as lost, and never
offered again. Whole-file damage is salvage.py's job; this is the row-sized remainder."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from agent.store import schema
from agent.store.fault import DiskFault
from agent.store.rows import Row
from agent.store.tally import Tally

log = logging.getLogger("agent.store.outbox")


def decodable(db: sqlite3.Connection, raw: list[Any], *, tally: Tally, disk: DiskFault,
              lost: Callable[[list[int], str], None]) -> list[Row]:
    """The rows of a peek that decode; the others are set aside, counted and reported `lost`."""
    rows = [readable(r) for r in raw]
    bad = [row for row in rows if not decodes(row)]
    if not bad:
        return rows
    seqs = [row.seq for row in bad if isinstance(row.seq, int)]
    log.error("outbox: %d row(s) that cannot be decoded set aside: seq %s", len(bad), seqs)
    try:
        with schema.transaction(db):
            set_aside(db, seqs)
    except sqlite3.Error as exc:
        disk.check(exc, "outbox: cannot set rows aside")
    # Skipped from now on even if the disk refused the move: never retried forever.
    schema.skip(db, seqs)
    tally.quarantined += len(bad)
    tally.queued = max(0, tally.queued - len(bad))
    if seqs:
        lost(seqs, "quarantined")
    return [row for row in rows if decodes(row)]


def readable(raw: Sequence[Any]) -> Row:
    """A stored row as a Row; a body stored as TEXT (a hand-made or older file) is the same
    JSON: taken as bytes."""
    row = Row._make(raw)
    return row._replace(body=row.body.encode()) if isinstance(row.body, str) else row


def decodes(row: Row) -> bool:
    """A stored row the uplink can publish: the right types and a JSON object as body."""
    if not (isinstance(row.seq, int) and isinstance(row.prio, int) and isinstance(row.topic, str)
            and isinstance(row.retain, int) and isinstance(row.mid, str)
            and isinstance(row.sess, int) and isinstance(row.ts, int | float)
            and isinstance(row.body, bytes)):
        return False
    try:
        return isinstance(json.loads(row.body), dict)
    except ValueError:  # UnicodeDecodeError is one too
        return False


def set_aside(db: sqlite3.Connection, seqs: list[int]) -> None:
    """Inside the caller's transaction: move these rows from `outbox` to `quarantine`."""
    db.execute("CREATE TABLE IF NOT EXISTS quarantine AS SELECT * FROM outbox WHERE 0")
    db.executemany("INSERT INTO quarantine SELECT * FROM outbox WHERE seq = ?",
                   [(s,) for s in seqs])
    db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
