"""Timestamp repair. Rows stamped while the wall clock was not real (a Pi without RTC reads
1970 until NTP answers) are held (`hold = 1`) with their monotonic stamp; once the clock is real
with `offset` (wall = monotonic + offset), their `ts` and the absolute times in their bodies are
moved to when the reading was really taken, and they become publishable."""

from __future__ import annotations

import json
import sqlite3

from agent.runtime.timesync import PLAUSIBLE_AFTER
from agent.store.rows import COLUMNS, Row


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


def corrected(row: Row, offset: float, *, same_boot: bool) -> Row:
    """`row` with its real time, released from the hold."""
    if same_boot and row.mono is not None:
        new_ts = row.mono + offset
    elif row.ts >= PLAUSIBLE_AFTER:
        new_ts = row.ts  # from an earlier boot: keep what the clock said, flagged uncertain
    else:
        # An earlier boot at 1970: the reading happened before this boot began; that bound
        # (boot time = offset, since the monotonic clock counts from boot) beats 1970.
        new_ts = offset
    delta = new_ts - row.ts
    return row._replace(ts=round(new_ts, 3), body=shift_times(row.body, delta), hold=0)


def apply(db: sqlite3.Connection, offset: float, first_session_of_boot: int) -> int:
    """Inside the caller's transaction: correct every held row on disk; how many. Only rows of
    this boot's sessions have a monotonic stamp that `offset` applies to."""
    held = [Row._make(r) for r in
            db.execute(f"SELECT {COLUMNS} FROM outbox WHERE hold = 1").fetchall()]
    fixed = [corrected(r, offset, same_boot=r.sess >= first_session_of_boot) for r in held]
    db.executemany("UPDATE outbox SET ts = ?, body = ?, hold = 0 WHERE seq = ?",
                   [(r.ts, r.body, r.seq) for r in fixed])
    return len(fixed)
