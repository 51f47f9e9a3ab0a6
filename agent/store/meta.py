"""The outbox's small key-value table (`meta`): the seq counter, the session and its boot, and
values other parts of the agent keep beside the queue (the rule engine's alarm state, billing's
history) so that they commit in the same transaction as the rows that depend on them.

Stored as text: JSON for the values others stage, plain decimal for `next_seq` and `sess` and
`first-session-of-boot` for `boot` (the format files in the field already have)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.runtime.timesync import TimeKeeper


class Meta:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.staged: dict[str, Any] = {}  # goes to disk with the next batch commit

    def read(self, key: str, default: str) -> str:
        """The committed text of `key`."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def get(self, key: str) -> Any:
        return json.loads(self.read(key, "null"))

    def items(self, low: str, high: str, limit: int) -> list[tuple[str, Any]]:
        rows = self._db.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ? "
                                "ORDER BY key LIMIT ?", (low, high, limit)).fetchall()
        return [(key, json.loads(value)) for key, value in rows]

    def stage(self, values: dict[str, Any]) -> None:
        self.staged.update(values)

    def write(self, next_seq: int, values: dict[str, Any]) -> None:
        """Inside the caller's transaction: the seq counter and `values` (None deletes a key)."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (str(next_seq),))
        for key, value in values.items():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
                continue
            text = str(value) if key == "sess" else json.dumps(value)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))

    def written(self, values: dict[str, Any]) -> None:
        """These staged values are on disk now (values staged since stay staged)."""
        for key in values:
            self.staged.pop(key, None)

    def write_session(self, session: int, boot: str) -> None:
        """Inside the caller's transaction: the session counter and the boot it belongs to."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('sess', ?)", (str(session),))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (boot,))

    def next_seq(self) -> int:
        """Where the seq counter continues: the stored counter, or past the highest stored row
        when an older version lost the counter row."""
        counter = int(self.read("next_seq", "1"))
        last = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        return last + 1 if last is not None and last >= counter else counter

    def first_session_of_boot(self, time: TimeKeeper | None) -> int:
        """The first session of the current boot: rows of sessions from it on have monotonic
        stamps comparable with ours (an agent restart keeps the boot, a power cut does not)."""
        if time is None:
            return 1 << 62
        boot, _, first = self.read("boot", "").partition(":")
        if boot == time.boot and first:
            return int(first)
        return int(self.read("sess", "0")) + 1  # this start is the first of a new boot
