"""Time, injectable: the agent asks a Clock, tests hand it a fake one."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...  # wall clock, epoch seconds (what goes into `ts`)

    def monotonic(self) -> float: ...  # schedule bookkeeping, immune to clock jumps

    async def wait_until(self, deadline: float, event: asyncio.Event) -> None:
        """Return at `deadline` (monotonic scale) or as soon as `event` is set."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait_until(self, deadline: float, event: asyncio.Event) -> None:
        # The event loop's clock is time.monotonic: the deadline needs no conversion, and a
        # timeout around the event's wait costs no extra task per poll.
        try:
            async with asyncio.timeout_at(deadline):
                await event.wait()
        except TimeoutError:
            return
