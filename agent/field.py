"""The field side of a running agent: one driver per bus, one poller per device.

Opened at start, and changed piece by piece when a config apply touches a bus or a device:
a poller is a task of the supervisor's TaskGroup, so stopping one is cancelling that task; a bus
is its own exit stack, so closing one leaves the others' connections alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack

from agent import registry
from agent.clock import Clock
from agent.config import Config
from agent.config_models import BusConfig, DeviceConfig
from agent.driver import Driver
from agent.models import DeviceState, PointValue
from agent.poller import DevicePoller

ValuesSink = Callable[[DeviceConfig, list[PointValue], float], None]
StateSink = Callable[[DeviceConfig, DeviceState, str | None], None]


class Field:
    def __init__(self, clock: Clock, on_values: ValuesSink, on_state: StateSink) -> None:
        self.clock = clock
        self.on_values = on_values
        self.on_state = on_state
        self.drivers: dict[str, Driver] = {}
        self.pollers: dict[str, DevicePoller] = {}
        self._stacks: dict[str, AsyncExitStack] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one transaction at a time per bus
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None

    async def open_buses(self, buses: Iterable[BusConfig]) -> None:
        for bus in buses:
            stack = AsyncExitStack()
            cls = registry.load(registry.DRIVERS, bus.driver)
            self.drivers[bus.id] = await stack.enter_async_context(cls(bus))
            self._stacks[bus.id] = stack
            self._locks[bus.id] = asyncio.Lock()

    async def close_buses(self, bus_ids: Iterable[str]) -> None:
        """Close buses whose pollers are already stopped."""
        for bus_id in list(bus_ids):
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
                self.pollers[device.id] = DevicePoller(
                    device, self.drivers[bus.id], self._locks[bus.id], clock=self.clock,
                    stagger=device.poll * index / len(on_bus),
                    on_values=self.on_values, on_state=self.on_state)
                if self._group is not None:
                    self._start(device.id)

    def start(self, group: asyncio.TaskGroup) -> None:
        """Run every poller as a task of the supervisor's group (and those added later)."""
        self._group = group
        for device_id in self.pollers:
            self._start(device_id)

    def _start(self, device_id: str) -> None:
        assert self._group is not None
        self._tasks[device_id] = self._group.create_task(self.pollers[device_id].run(),
                                                         name=f"poll:{device_id}")

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
