"""Time, injectable: the agent asks a Clock, tests hand it a fake one."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...  # wall clock, epoch seconds (what goes into `ts`)

    def monotonic(self) -> float: ...  # schedule bookkeeping, immune to clock jumps

    async def sleep_until(self, deadline: float) -> None: ...  # deadline on the monotonic scale


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
