"""The order `peek` offers messages in: alarms, device events, billing indexes, then telemetry
by seq, where the telemetry backlog of an outage (seq up to `hist_until`) is its own lane that the
uplink's pacer may hold to `hist_budget` places, so live data is not stuck behind hours of it."""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple

from agent.store.rows import COLUMNS, PRIO_ALARM, PRIO_EVENT, PRIO_INDEX, PRIO_TELEMETRY


class Lane(NamedTuple):
    prio: int
    backlog: bool | None  # telemetry: True the outage backlog, False live; None other kinds


LANES = (Lane(PRIO_ALARM, None), Lane(PRIO_EVENT, None), Lane(PRIO_INDEX, None),
         Lane(PRIO_TELEMETRY, True), Lane(PRIO_TELEMETRY, False))

_SEQ_BOUND = {None: "", True: "AND seq <= ?", False: "AND seq > ?"}


def select(db: sqlite3.Connection, lane: Lane, *, limit: int, hist_until: int) -> list[Any]:
    """Up to `limit` committed rows of `lane` that are publishable: not held for the clock, not
    delivered, not skipped. Raw (they may not decode: see quarantine). Raises sqlite3.Error."""
    extra = () if lane.backlog is None else (hist_until,)
    return db.execute(
        f"SELECT {COLUMNS} FROM outbox WHERE prio = ? AND hold = 0 AND sent_at IS NULL "
        f"{_SEQ_BOUND[lane.backlog]} AND seq NOT IN (SELECT seq FROM temp.skip) "
        "ORDER BY seq LIMIT ?", (lane.prio, *extra, limit)).fetchall()
