"""An extra poll (poll.now, a GPIO edge waking its poller) leaves the regular schedule alone."""

from __future__ import annotations

import asyncio
import time

from agent.sdk.clock import SystemClock
from agent.runtime.poller import DevicePoller
from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver

PERIOD = 0.6


async def test_an_early_poll_keeps_the_next_tick_where_it_was(
        modbus_building: tuple[ModbusBuilding, int]) -> None:
    _, port = modbus_building
    device = ModbusDeviceConfig.model_validate({"id": "vmc", "bus": "lan", "address": 1,
                                                "poll": PERIOD, "timeout": "300ms",
                                                "points": DEMO_POINTS[1]})
    times: list[float] = []
    bus = ModbusBusConfig(id="lan", driver="modbus-tcp", host="127.0.0.1", port=port)
    async with ModbusDriver(bus) as driver:
        poller = DevicePoller(device, driver, asyncio.Lock(), clock=SystemClock(), stagger=0,
                              on_values=lambda d, v, ts: times.append(time.monotonic()),
                              on_state=lambda d, s, r: None)
        task = asyncio.create_task(poller.run())
        try:
            async with asyncio.timeout(5):
                while len(times) < 1:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(PERIOD / 3)
                poller.poll_now()  # the extra poll
                while len(times) < 3:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    start = times[0]
    assert times[1] - start < PERIOD / 2  # the extra poll, at once
    # the regular tick at PERIOD, not pushed out to PERIOD/3 + PERIOD or later
    assert PERIOD * 0.9 < times[2] - start < PERIOD * 1.25, [t - start for t in times]
