"""An outbox that an SD card rotted is moved aside and what it still holds is carried over.

At start, before the outbox opens it, `check(path)` runs SQLite's `quick_check` (every page, every
record, in one pass; a power cut on a sane card never fails it, a rotted page does). A file that
fails it, or that SQLite cannot even open (truncated, a bad header), is renamed with its -wal and
-shm to `NAME.corrupt-STAMP` (kept for diagnosis) and `salvage` copies every row still readable,
in seq order, with the meta values (seq counter, session), into a fresh file at the old name. Rows
that cannot be read are lost: their seq ranges go into the report, which the supervisor publishes
as a `buffer.salvaged` event and keeps in `health.outbox.salvage`.

Reading a damaged table: whole ranges of seqs are read at once; a range that raises is split in
two until the bad rows are isolated, so one bad page costs a few queries, not the whole table.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.store import sqlite_pages
from agent.sdk.durable import SQLITE_SIDECARS, fsync_dir, private_sqlite

log = logging.getLogger(__name__)

CHUNK = 4096  # seqs read per query while the table reads cleanly
MAX_LOST_RANGES = 100  # ranges listed in the report; more are summed in `lost`


@dataclass
class Salvage:
    """What happened to a damaged outbox file."""

    reason: str  # why the file was set aside (SQLite's own words)
    moved_to: str  # the damaged file, kept for diagnosis
    salvaged: int = 0  # rows carried over into the fresh file
    # Seqs in the table's range that could not be read: lost, unless they had been delivered
    # and deleted already (a read cannot tell them apart).
    lost: int = 0
    lost_ranges: list[list[int]] = field(default_factory=list)  # [first, last] seq, inclusive
    seq_unknown: bool = False  # nothing told the last seq: more may be lost than listed
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(path: Path) -> str | None:
    """None when `path` is absent or sound, else why it is not."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            results = [row[0] for row in db.execute("PRAGMA quick_check(20)")]
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if results != ["ok"]:
        return "; ".join(str(r) for r in results[:3])
    return None


def salvage(path: Path, reason: str, schema: str, columns: tuple[str, ...]) -> Salvage:
    """Move the damaged file aside and copy what is readable into a fresh one at `path`."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", *SQLITE_SIDECARS):  # the WAL goes with its database: it holds commits
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, aside.with_name(aside.name + suffix))
    fsync_dir(path.parent)
    report = Salvage(reason=reason, moved_to=str(aside))
    log.error("outbox %s is damaged (%s): moved to %s, salvaging what is readable", path,
              reason, aside)
    private_sqlite(path)
    fresh = sqlite3.connect(path, isolation_level=None)
    try:
        fresh.executescript(schema)
        # Read-write, so that SQLite applies the WAL moved along with the file.
        old = sqlite3.connect(aside, isolation_level=None)
        try:
            readable = _copy(old, fresh, columns, report)
        finally:
            old.close()
        if not readable:  # SQLite cannot read the tables at all: read the pages ourselves
            _copy_pages(aside, fresh, columns, report)
    finally:
        fresh.close()
    log.error("outbox salvage: %d rows kept, %d lost %s%s", report.salvaged, report.lost,
              report.lost_ranges[:5], " (and maybe more: the last seq is unknown)"
              if report.seq_unknown else "")
    return report


def _read(db: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[Any] | None:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.DatabaseError:
        return None


def _copy(old: sqlite3.Connection, fresh: sqlite3.Connection, wanted: tuple[str, ...],
          report: Salvage) -> bool:
    """Copy through SQLite; False when it cannot read the tables at all."""
    # A file written by an older version may lack the newer columns: copy those it has.
    have = {row[1] for row in _read(old, "PRAGMA table_info(outbox)") or []}
    columns = ", ".join(c for c in wanted if c in have or not have)
    meta = _read(old, "SELECT key, value FROM meta")
    bounds = _read(old, "SELECT MIN(seq), MAX(seq) FROM outbox")
    if meta is None and bounds is None:
        return False
    meta = meta or []
    first, last = bounds[0] if bounds else (None, None)
    counter = dict(meta).get("next_seq")
    if first is None:  # empty, or the table cannot say: fall back on the seq counter
        first = 1
        last = int(counter) - 1 if counter and str(counter).isdigit() else None
    if last is None:
        report.seq_unknown = True
        last = first - 1
    marks = ",".join("?" * len(columns.split(", ")))
    insert = f"INSERT OR IGNORE INTO outbox ({columns}) VALUES ({marks})"
    fresh.execute("BEGIN")
    fresh.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta)
    start = first
    while start <= last:
        end = min(last, start + CHUNK - 1)
        for rows, lost in _readable(old, columns, start, end):
            fresh.executemany(insert, rows)
            report.salvaged += len(rows)
            if lost is not None:
                _note_lost(report, *lost)
        start = end + 1
    fresh.execute("COMMIT")
    return True


def _copy_pages(aside: Path, fresh: sqlite3.Connection, wanted: tuple[str, ...],
                report: Salvage) -> None:
    """The table leaf pages still on the card, read without SQLite (sqlite_pages)."""
    rows: dict[int, tuple[Any, ...]] = {}
    meta: dict[str, str] = {}
    defaults = (None, 0, None)  # mono, hold, sent_at for rows of an older schema
    for rowid, values in sqlite_pages.leaf_rows(aside):
        if _outbox_shaped(values):
            full = [*values, *defaults[len(values) - 8:]][:len(wanted)]
            rows[rowid] = (rowid, *full[1:])
        elif len(values) == 2 and all(isinstance(v, str) for v in values):
            meta[values[0]] = values[1]
    report.salvaged = len(rows)
    counter = meta.get("next_seq", "")
    last = max(rows, default=0)
    if counter.isdigit() and int(counter) - 1 >= last:
        last = int(counter) - 1
    else:
        report.seq_unknown = True
    first = min(rows, default=1)
    missing_from = None
    for seq in range(first, last + 2):  # the gaps between what was found are reported
        if seq not in rows and seq <= last:
            missing_from = seq if missing_from is None else missing_from
        elif missing_from is not None:
            _note_lost(report, missing_from, seq - 1)
            missing_from = None
    marks = ",".join("?" * len(wanted))
    fresh.execute("BEGIN")
    fresh.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
    fresh.executemany(f"INSERT INTO outbox ({', '.join(wanted)}) VALUES ({marks})",
                      [rows[seq] for seq in sorted(rows)])
    fresh.execute("COMMIT")


def _outbox_shaped(values: list[Any]) -> bool:
    """seq (stored NULL: it is the rowid), prio, topic, retain, mid, sess, ts, body, ..."""
    return (8 <= len(values) <= 11 and values[0] is None and values[1] in (0, 1, 2)
            and isinstance(values[2], str) and isinstance(values[4], str)
            and isinstance(values[5], int) and isinstance(values[6], int | float)
            and isinstance(values[7], bytes))


def _readable(old: sqlite3.Connection, columns: str, start: int, end: int) -> Any:
    """Yield (rows, lost range or None) over seqs start..end, splitting ranges that raise."""
    rows = _read(old, f"SELECT {columns} FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq",
                 (start, end))
    if rows is not None:
        yield rows, None
        return
    if start == end:
        yield [], (start, end)
        return
    middle = (start + end) // 2
    yield from _readable(old, columns, start, middle)
    yield from _readable(old, columns, middle + 1, end)


def _note_lost(report: Salvage, first: int, last: int) -> None:
    report.lost += last - first + 1
    ranges = report.lost_ranges
    if ranges and ranges[-1][1] == first - 1:
        ranges[-1][1] = last
    elif len(ranges) < MAX_LOST_RANGES:
        ranges.append([first, last])
