"""What the outbox stores and hands out: the priorities, one stored row (`Row`, named fields in
the column order of the `outbox` table) and the message the uplink publishes (`Message`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

# Alarms overtake device events, which overtake boundary indexes, which overtake telemetry.
PRIO_ALARM = 0
PRIO_EVENT = 1
PRIO_TELEMETRY = 2
PRIO_INDEX = 3  # billing indexes (agent/billing): after events, before telemetry; never dropped

ROW_OVERHEAD = 64  # bytes of mid, seq, ts... per row on disk beside the body, for the size bound
# The SQL that sizes a stored row the way `Row.size` does (the bounds and the tallies agree).
SIZE_SQL = f"LENGTH(body) + LENGTH(topic) + {ROW_OVERHEAD}"


class Row(NamedTuple):
    """One queued message as the `outbox` table holds it (sent_at aside). A tuple underneath, in
    column order, so sqlite3 binds it as it is and `Row._make` reads a SELECT of COLUMNS."""

    seq: int
    prio: int
    topic: str  # relative to the topic root, e.g. dev/vmc-b/tm
    retain: int
    mid: str
    sess: int
    ts: float
    body: bytes  # JSON object merged into the envelope at publish time
    mono: float | None  # monotonic instant of ts (same boot as sess): corrections, age
    hold: int  # 1: stamped before the clock was real, not yet corrected

    @property
    def size(self) -> int:
        return weight(self.topic, self.body)

    def message(self) -> Message:
        return Message(self.seq, self.prio, self.topic, bool(self.retain), self.mid, self.sess,
                       self.ts, self.body)


COLUMNS = ", ".join(Row._fields)  # SELECT/INSERT column list, in Row's order


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

    @property
    def size(self) -> int:
        return weight(self.topic, self.body)


def weight(topic: str, body: bytes) -> int:
    """A row's weight against `max_bytes` and `memory_bytes`."""
    return len(body) + len(topic) + ROW_OVERHEAD


def readings(prio: int, body: dict[str, Any]) -> int:
    """The SenML records a telemetry body carries (for the wear figure per 1,000 readings)."""
    records = body.get("e") if prio == PRIO_TELEMETRY else None
    return len(records) if isinstance(records, list) else 0
