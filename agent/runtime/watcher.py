"""One push device's liveness: what a poller is for a polled device, for one that speaks alone.

A radio meter (or a GPIO contact) is never asked: the driver hears it and calls `heard`. The
watcher turns that into the same things a `DevicePoller` produces, with the same surface
(`state`, `stats`, `read_now`, `write_now`, `poll_now`), so the pipeline, rules, commands,
`status` and `health` treat both alike:

- each message heard: values to the pipeline, the device `ok` (again);
- nothing heard for `silence` seconds (a multiple of the device's transmit interval): `down`
  with the reason, so `comm_lost` and `availability` rules work on it.

`run()` is the only task: it sleeps until the silence deadline, which every message pushes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from agent.sdk.clock import Clock
from agent.sdk.config import DeviceConfig, PointConfig
from agent.sdk.driver import PushDriver
from agent.sdk.errors import DeviceUnavailable
from agent.sdk.models import DeviceState, PointValue, Value
from agent.runtime.poller import PollStats

log = logging.getLogger(__name__)


class DeviceWatcher:
    def __init__(self, device: DeviceConfig, driver: PushDriver, *, clock: Clock,
                 on_values: Callable[[DeviceConfig, list[PointValue], float], None],
                 on_state: Callable[[DeviceConfig, DeviceState, str | None], None]) -> None:
        self.device = device
        self.driver = driver
        self.clock = clock
        self.on_values = on_values
        self.on_state = on_state
        self.state = DeviceState.UNKNOWN
        self.stats = PollStats()  # polls = messages heard, failures = times it fell silent
        self.silence = driver.silence(device)
        self.latest: list[PointValue] = []
        self._heard_at = clock.monotonic()  # the start counts as "heard": silence runs from it
        self._wake = asyncio.Event()

    def heard(self, values: Sequence[PointValue], ts: float) -> None:
        """The driver heard the device: `values` at `ts` (the device's own time, or reception).

        No values (a repeat of a message already handled) still says the device is there."""
        self._heard_at = self.clock.monotonic()
        self.stats.polls += 1
        self.stats.last_ok = self.clock.time()
        if values:
            self.latest = list(values)
        if self.state is not DeviceState.OK:
            if self.state is DeviceState.DOWN:
                log.info("device %s is heard again", self.device.id)
            self.state = DeviceState.OK
            self.on_state(self.device, DeviceState.OK, None)
        self._wake.set()
        if values:
            self.on_values(self.device, self.latest, ts)

    async def run(self) -> None:
        self.driver.attach(self.device, self.heard)
        try:
            while True:
                self._wake.clear()
                deadline = self._heard_at + self.silence
                if self.clock.monotonic() >= deadline:
                    self._fell_silent()
                    await self._wake.wait()  # down until heard again
                else:
                    await self.clock.wait_until(deadline, self._wake)
        finally:
            self.driver.detach(self.device.id)

    def _fell_silent(self) -> None:
        if self.state is DeviceState.DOWN:
            return
        reason = f"not heard for {self.silence:g}s"
        self.stats.failures += 1
        self.stats.last_error = reason
        log.warning("device %s is down: %s", self.device.id, reason)
        self.state = DeviceState.DOWN
        self.on_state(self.device, DeviceState.DOWN, reason)

    # -- the poller's surface, for commands ------------------------------------------------------

    def poll_now(self) -> None:
        """Nothing to ask a device that speaks alone: its next message comes when it comes."""

    async def read_now(self) -> list[PointValue]:
        """The values of the last message heard (point.read, `batigate read`)."""
        if not self.latest:
            raise DeviceUnavailable(f"{self.device.id} has not been heard since the start")
        if self.state is DeviceState.DOWN:
            raise DeviceUnavailable(f"{self.device.id}: {self.stats.last_error}")
        return list(self.latest)

    async def write_now(self, point: PointConfig, value: Value) -> None:
        await self.driver.write(self.device, point, value)
