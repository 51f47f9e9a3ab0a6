"""Whether the disk takes the outbox's writes. A full, read-only or failing medium
(diskguard.medium_fault) puts the outbox in fault: it keeps running from memory, says so once
through `on_fault(reason)`, and `on_fault(None)` when a commit succeeds again. Any other SQLite
error (a bug, a damaged file) is not hidden: it raises StoreError."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from agent.sdk.errors import StoreError
from agent.store.diskguard import medium_fault
from agent.store.tally import Tally

log = logging.getLogger("agent.store.outbox")  # the outbox's voice in the journal, as before

OnFault = Callable[[str | None], None]  # why the disk refuses writes; None: it takes them again


class DiskFault:
    def __init__(self, tally: Tally, on_fault: OnFault | None, *,
                 while_failing: Callable[[], None], memory_bytes: int) -> None:
        self.reason: str | None = None
        self._tally = tally
        self.on_fault = on_fault or (lambda reason: None)
        self._while_failing = while_failing  # after each failure: bound memory, serve from it
        self._memory_bytes = memory_bytes

    def check(self, exc: sqlite3.Error, doing: str) -> None:
        """Enter the fault when `exc` says the medium, else raise StoreError `doing: exc`."""
        reason = medium_fault(exc)
        if reason is None:
            raise StoreError(f"{doing}: {exc}") from exc
        self.enter(reason)

    def enter(self, reason: str) -> None:
        first = self.reason is None
        self.reason = reason
        if first:
            self._tally.faults += 1
            log.error("outbox: the disk refuses writes (%s): holding up to %d bytes in memory",
                      reason, self._memory_bytes)
            self.on_fault(reason)
        self._while_failing()

    def leave(self) -> None:
        """A write went through: report the end of a fault, if one was on."""
        if self.reason is None:
            return
        reason, self.reason = self.reason, None
        log.warning("outbox: the disk takes writes again (was: %s)", reason)
        self.on_fault(None)
