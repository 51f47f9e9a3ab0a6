"""What happens to a row once the uplink published it.

`release: puback` (default): the broker's PUBACK releases it. `release: backend`: the PUBACK only
marks it sent; it is released when the backend's watermark (`{root}/ack`, `{"seq": N}`) says it
stored everything up to N, and a new connection sends the unreleased rows again (`rewind`).
Released rows leave the table with the next batch commit (or are kept as "sent" for
`buffer.resend` when `buffer.retain` is set); until then the skip table hides them from `peek`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from agent.store import schema
from agent.store.pending import Pending
from agent.store.rows import COLUMNS, Message, Row
from agent.store.signals import Signals
from agent.store.tally import Tally

Release = Literal["puback", "backend"]


class ResendUnavailable(Exception):
    """buffer.resend while the outbox keeps nothing it sent (`buffer.retain` unset)."""


def parse_watermark(payload: bytes) -> int | None:
    """The backend's `{root}/ack` message, `{"seq": N}`: it has stored everything up to N."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


class Delivery:
    def __init__(self, db: sqlite3.Connection, pending: Pending, tally: Tally, signals: Signals,
                 *, release: Release, retain: float) -> None:
        self._db = db
        self._pending = pending
        self._tally = tally
        self._signals = signals
        self.release = release
        self.retain = retain
        self.acked: set[int] = set()  # delivered/released, deleted (or marked) at the next commit
        self.sent: set[int] = set()  # backend mode: PUBACKed, waiting for the backend's watermark
        # Backend mode: PUBACKed by this process and not released yet (kept across reconnections:
        # only these may a watermark release), and the highest seq ever PUBACKed here.
        self.published: set[int] = set()
        self.highest_published = 0
        self.released_upto = 0

    def ack(self, messages: Sequence[Message]) -> None:
        if self.release == "backend":
            self._mark_sent(messages)
        else:
            self._release(messages)

    def _release(self, messages: Sequence[Message]) -> None:
        fresh: list[int] = []
        for message in messages:
            if message.seq in self._pending:  # delivered from memory while the disk failed
                self._pending.pop(message.seq)
                continue
            if message.seq not in self.acked:
                self.acked.add(message.seq)
                self.sent.discard(message.seq)
                self.published.discard(message.seq)
                fresh.append(message.seq)
                self._tally.queued -= 1
                if not self.retain:
                    self._tally.bytes -= message.size
        schema.skip(self._db, fresh)
        if messages:
            self._signals.work.set()
        self._signals.settle(self._tally.queued, len(self._pending))

    def _mark_sent(self, messages: Sequence[Message]) -> None:
        fresh = [m.seq for m in messages if m.seq not in self.sent and m.seq not in self.acked]
        self.sent.update(fresh)
        self.published.update(fresh)
        self.highest_published = max([self.highest_published, *fresh])
        schema.skip(self._db, fresh)

    def committed(self, acked: list[int]) -> None:
        """These acknowledged rows left the table (or were marked sent) in a commit."""
        self.acked.difference_update(acked)
        schema.unskip(self._db, acked)
        if self.retain:
            self._tally.retained += len(acked)

    def release_upto(self, seq: int) -> int:
        self.released_upto = max(self.released_upto, seq)
        covered = [s for s in self.published if s <= seq]
        if not covered:
            return 0
        found = map(Row._make, self._db.execute(
            f"SELECT {COLUMNS} FROM outbox WHERE seq IN (SELECT value FROM json_each(?)) "
            "AND sent_at IS NULL", (json.dumps(covered),)))
        rows = {row.seq: row for row in found}
        messages = [rows[s].message() for s in covered if s in rows and s not in self.acked]
        messages += [self._pending.rows[s].message() for s in covered if s in self._pending]
        self.published.difference_update(covered)
        self._release(messages)
        return len(messages)

    def rewind(self) -> None:
        if self.sent:
            schema.unskip(self._db, list(self.sent))
            self.sent.clear()
            self._signals.committed.set()

    def resend(self, first: int, last: int) -> dict[str, Any]:
        if not self.retain:
            raise ResendUnavailable
        db = self._db
        count = db.execute("UPDATE outbox SET sent_at = NULL WHERE seq BETWEEN ? AND ? "
                           "AND sent_at IS NOT NULL", (first, last)).rowcount
        waiting = db.execute("SELECT COUNT(*) FROM outbox WHERE seq BETWEEN ? AND ? AND "
                             "sent_at IS NULL", (first, last)).fetchone()[0] - count
        low, high = db.execute("SELECT MIN(seq), MAX(seq) FROM outbox WHERE sent_at IS "
                               "NOT NULL").fetchone()
        self._tally.retained -= count
        self._tally.queued += count
        if count:
            self._signals.emptied.clear()
            self._signals.committed.set()
        return {"resent": count, "already_queued": waiting,
                "retained": {"first_seq": low, "last_seq": high}}
