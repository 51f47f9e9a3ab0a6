"""The rows accepted but not committed yet: telemetry waiting for its batch, or everything while
the disk refuses writes. Kept in seq order (insertion order); their bytes are counted for the
memory bound (bounds.trim_memory)."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from agent.store.restamp import corrected
from agent.store.rows import PRIO_TELEMETRY, Message, Row


class Pending:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, seq: object) -> bool:
        return seq in self.rows

    def __iter__(self) -> Iterator[Row]:
        return iter(list(self.rows.values()))

    def add(self, row: Row) -> None:
        self.rows[row.seq] = row
        self.bytes += row.size

    def pop(self, seq: int) -> Row:
        row = self.rows.pop(seq)
        self.bytes -= row.size
        return row

    def committed(self, rows: list[Row]) -> None:
        """These rows are on disk now (rows added since stay)."""
        for row in rows:
            self.rows.pop(row.seq, None)
        self.bytes = sum(r.size for r in self.rows.values())

    def held(self) -> int:
        """Rows waiting for the clock correction."""
        return sum(1 for r in self.rows.values() if r.hold)

    def publishable(self) -> bool:
        return any(not r.hold for r in self.rows.values())

    def restamp(self, offset: float) -> None:
        """The clock became real: rows in memory are of this boot, their monotonic stamp holds."""
        for seq, row in list(self.rows.items()):
            if row.hold:
                self.rows[seq] = corrected(row, offset, same_boot=True)

    def lane(self, prio: int, *, skip: Collection[int], hist_until: int) -> list[Message]:
        """The memory rows of one priority `peek` may offer while the disk fails: not held, not
        already sent, and (telemetry) not part of the outage backlog."""
        return [r.message() for r in self.rows.values()
                if r.prio == prio and not r.hold and r.seq not in skip
                and (prio != PRIO_TELEMETRY or r.seq > hist_until)]
