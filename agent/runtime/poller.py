"""One device's poll schedule: staggered, never overlapping, backing off while the device is down.

This is the isolation boundary around driver code: whatever a driver raises (except cancellation)
ends one poll, marks the device down and is retried later; it never reaches the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from agent.sdk.clock import Clock
from agent.sdk.config import DeviceConfig, PointConfig
from agent.sdk.driver import Driver
from agent.sdk.errors import DeviceUnavailable
from agent.sdk.models import DeviceState, PointValue, Value

log = logging.getLogger(__name__)

BACKOFF_CAP = 300.0  # a dead device is still tried every 5 minutes at least


@dataclass(slots=True)
class PollStats:
    polls: int = 0
    failures: int = 0
    overruns: int = 0  # ticks skipped because a poll took longer than the period
    last_ok: float | None = None  # wall-clock time of the last good poll
    last_error: str | None = None


class DevicePoller:
    def __init__(self, device: DeviceConfig, driver: Driver, bus_lock: asyncio.Lock, *,
                 clock: Clock, stagger: float,
                 on_values: Callable[[DeviceConfig, list[PointValue], float], None],
                 on_state: Callable[[DeviceConfig, DeviceState, str | None], None]) -> None:
        self.device = device
        self.driver = driver
        self.bus_lock = bus_lock
        self.clock = clock
        self.stagger = stagger
        self.on_values = on_values
        self.on_state = on_state
        self.state = DeviceState.UNKNOWN
        self.stats = PollStats()
        self._wake = asyncio.Event()  # poll.now: poll at once instead of waiting for the tick
        self._failures = 0

    def poll_now(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        period = self.device.poll
        next_due = self.clock.monotonic() + self.stagger
        while True:
            early = await self._wait(next_due)
            started = self.clock.monotonic()
            ok = await self.poll_once()
            if ok and early:
                pass  # an extra poll (poll.now, a GPIO edge): the schedule stays as it was
            elif ok:
                next_due += period
                late = self.clock.monotonic() - next_due
                if late > 0:  # overran: skip the missed ticks rather than run them back to back
                    skipped = math.ceil(late / period)
                    self.stats.overruns += skipped
                    next_due += skipped * period
            else:
                next_due = started + self._backoff(period)

    async def _wait(self, deadline: float) -> bool:
        """Until `deadline` or a wake; True when woken before the deadline."""
        self._wake.clear()
        await self.clock.wait_until(deadline, self._wake)
        return self._wake.is_set() and self.clock.monotonic() < deadline

    def _backoff(self, period: float) -> float:
        # period, 2x, 4x ... capped; the jitter keeps dead devices from lining up on the bus.
        delay = min(max(period, BACKOFF_CAP), period * 2 ** min(self._failures - 1, 16))
        return delay * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not crypto

    @property
    def ceiling(self) -> float:
        """A generous bound over the driver's own timeouts: a hung driver must not hold the bus."""
        return self.device.timeout * (2 + len(self.device.points)) + 1.0

    async def read_now(self) -> list[PointValue]:
        """One read of every point, under the bus lock, for the schedule or a command.

        Raises DeviceUnavailable, TimeoutError (the ceiling) or the driver's DriverError.
        """
        async with self.bus_lock, asyncio.timeout(self.ceiling):
            values = list(await self.driver.poll(self.device))
        _honour_cancellation()
        return values

    async def write_now(self, point: PointConfig, value: Value) -> None:
        """One write under the bus lock; raises like `read_now`, or PointNotWritable."""
        async with self.bus_lock, asyncio.timeout(self.ceiling):
            await self.driver.write(self.device, point, value)
        _honour_cancellation()

    async def poll_once(self) -> bool:
        """One scheduled poll; True when the device answered."""
        device = self.device
        try:
            values = await self.read_now()
        except (DeviceUnavailable, TimeoutError) as exc:
            self._failed(str(exc) or "no answer")
            return False
        except Exception as exc:  # the isolation boundary: a driver bug ends this poll only
            log.exception("driver error while polling %s", device.id)
            self._failed(f"driver error: {exc!r}")
            return False
        self.stats.polls += 1
        self.stats.last_ok = self.clock.time()
        self._failures = 0
        if self.state is not DeviceState.OK:
            if self.state is DeviceState.DOWN:
                log.info("device %s answers again", device.id)
            self.state = DeviceState.OK
            self.on_state(device, DeviceState.OK, None)
        self.on_values(device, values, self.stats.last_ok)
        return True

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self.stats.failures += 1
        self.stats.last_error = reason
        if self.state is not DeviceState.DOWN:
            log.warning("device %s is down: %s", self.device.id, reason)
            self.state = DeviceState.DOWN
            self.on_state(self.device, DeviceState.DOWN, reason)


def _honour_cancellation() -> None:
    """Re-raise a cancellation that driver code swallowed.

    On Python 3.11, asyncio.wait_for (used inside pymodbus) can lose a cancellation that arrives
    while the awaited reply completes; the task then polls on and the supervisor waits for it
    forever at shutdown. The task's own count of cancel requests still says so.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
