"""The outbox's wake-ups: the committer, the uplink and a clean stop wait on these instead of
polling the queue."""

from __future__ import annotations

import asyncio


class Signals:
    def __init__(self) -> None:
        self.emptied = asyncio.Event()  # set when everything committed was acknowledged
        self.committed = asyncio.Event()  # set whenever new rows become publishable
        self.work = asyncio.Event()  # wakes the batch committer only when there is work

    def settle(self, queued: int, pending: int) -> None:
        """Nothing left to deliver, on disk or in memory: a waiting stop may go on."""
        if queued == 0 and not pending:
            self.emptied.set()
