"""The field side of a running agent: one driver per bus, one poller per device.

Opened at start, and changed piece by piece when a config apply touches a bus or a device:
a poller is a task of the supervisor's TaskGroup, so stopping one is cancelling that task; a bus
is its own exit stack, so closing one leaves the others' connections alone.

A push driver (`agent.sdk.driver.PushDriver`: radio meters) is not polled: its bus gets one listening
task, restarted with backoff if it ever fails, and each of its devices a `DeviceWatcher` in
`pollers` (same surface as a poller) that turns what is heard, or not heard, into values and
states. A polled driver that knows when a device has news (`WakingDriver`: GPIO edges) gets
`wake`, which makes that device's poller poll at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any
from contextlib import AsyncExitStack

from agent.sdk import registry
from agent.sdk.clock import Clock
from agent.config.loader import Config
from agent.sdk.config import BusConfig, DeviceConfig
from agent.sdk.driver import Driver, PushDriver, is_push
from agent.sdk.models import DeviceState, PointValue
from agent.runtime.poller import DevicePoller
from agent.runtime.watcher import DeviceWatcher

log = logging.getLogger(__name__)

LISTEN_BACKOFF_CAP = 60.0  # a push bus whose listener keeps failing is retried at least this often

ValuesSink = Callable[[DeviceConfig, list[PointValue], float], None]
EventSink = Callable[[dict[str, Any]], None]
StateSink = Callable[[DeviceConfig, DeviceState, str | None], None]


class Field:
    def __init__(self, clock: Clock, on_values: ValuesSink, on_state: StateSink,
                 on_event: EventSink | None = None) -> None:
        self.clock = clock
        self.on_values = on_values
        self.on_state = on_state
        self.on_event = on_event  # bus events of push drivers, for `evt`
        self.drivers: dict[str, Driver] = {}
        self.pollers: dict[str, DevicePoller | DeviceWatcher] = {}
        self._stacks: dict[str, AsyncExitStack] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one transaction at a time per bus
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}  # push buses
        self._group: asyncio.TaskGroup | None = None

    async def open_buses(self, buses: Iterable[BusConfig]) -> None:
        for bus in buses:
            stack = AsyncExitStack()
            cls = registry.load(registry.DRIVERS, bus.driver)
            self.drivers[bus.id] = await stack.enter_async_context(cls(bus))
            if is_push(self.drivers[bus.id]):
                self.drivers[bus.id].events = self.on_event  # type: ignore[union-attr]
            elif hasattr(self.drivers[bus.id], "wake"):  # agent.driver.WakingDriver
                self.drivers[bus.id].wake = self.wake  # type: ignore[attr-defined]
            self._stacks[bus.id] = stack
            self._locks[bus.id] = asyncio.Lock()
            if self._group is not None:
                self._listen(bus.id)

    async def close_buses(self, bus_ids: Iterable[str]) -> None:
        """Close buses whose pollers are already stopped."""
        for bus_id in list(bus_ids):
            listener = self._listeners.pop(bus_id, None)
            if listener is not None:
                listener.cancel()
                await asyncio.wait([listener])
            self.drivers.pop(bus_id, None)
            self._locks.pop(bus_id, None)
            stack = self._stacks.pop(bus_id, None)
            if stack is not None:
                await stack.aclose()

    async def close(self) -> None:
        await self.stop_pollers(list(self.pollers))
        await self.close_buses(list(self._stacks))

    def add_pollers(self, config: Config, device_ids: Iterable[str]) -> None:
        """Pollers for `device_ids`, staggered over their bus as at start; running at once when
        the field has been started."""
        wanted = set(device_ids)
        for bus in config.buses:
            on_bus = [d for d in config.devices if d.bus == bus.id]
            for index, device in enumerate(on_bus):
                if device.id not in wanted:
                    continue
                driver = self.drivers[bus.id]
                if is_push(driver):
                    self.pollers[device.id] = DeviceWatcher(
                        device, driver, clock=self.clock,  # type: ignore[arg-type]
                        on_values=self.on_values, on_state=self.on_state)
                    if self._group is not None:
                        self._start(device.id)
                    continue
                self.pollers[device.id] = DevicePoller(
                    device, self.drivers[bus.id], self._locks[bus.id], clock=self.clock,
                    stagger=device.poll * index / len(on_bus),
                    on_values=self.on_values, on_state=self.on_state)
                if self._group is not None:
                    self._start(device.id)

    def wake(self, device_id: str) -> None:
        """A waking driver has news for `device_id` (an edge): poll it now."""
        poller = self.pollers.get(device_id)
        if poller is not None:
            poller.poll_now()

    def start(self, group: asyncio.TaskGroup) -> None:
        """Run every poller as a task of the supervisor's group (and those added later)."""
        self._group = group
        for bus_id in self.drivers:
            self._listen(bus_id)
        for device_id in self.pollers:
            self._start(device_id)

    def _listen(self, bus_id: str) -> None:
        driver = self.drivers[bus_id]
        if is_push(driver) and bus_id not in self._listeners:
            assert self._group is not None
            self._listeners[bus_id] = self._group.create_task(
                _keep_listening(bus_id, driver), name=f"listen:{bus_id}")  # type: ignore[arg-type]

    def _start(self, device_id: str) -> None:
        assert self._group is not None
        kind = "watch" if isinstance(self.pollers[device_id], DeviceWatcher) else "poll"
        self._tasks[device_id] = self._group.create_task(self.pollers[device_id].run(),
                                                         name=f"{kind}:{device_id}")

    async def stop_pollers(self, device_ids: Iterable[str]) -> None:
        """Cancel these pollers and wait until they let go of their bus."""
        tasks = []
        for device_id in list(device_ids):
            self.pollers.pop(device_id, None)
            task = self._tasks.pop(device_id, None)
            if task is not None:
                task.cancel()
                tasks.append(task)
        if tasks:
            await asyncio.wait(tasks)


async def _keep_listening(bus_id: str, driver: PushDriver) -> None:
    """The isolation boundary of a push bus, as the poller is for a polled device: whatever the
    driver's listener raises (except cancellation) is logged, counted, and retried with backoff;
    it never reaches the supervisor."""
    failures = 0
    while True:
        try:
            await driver.listen()
            return
        except Exception as exc:  # the boundary: a driver bug ends this listen only
            failures += 1
            driver.stats.exceptions += 1
            delay = min(LISTEN_BACKOFF_CAP, 2.0 ** min(failures, 6)) * random.uniform(0.9, 1.1)  # noqa: S311
            log.exception("bus %s: the listener failed (%r); again in %.0fs", bus_id, exc, delay)
        await asyncio.sleep(delay)
