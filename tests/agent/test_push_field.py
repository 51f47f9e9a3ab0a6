"""The field's push path (agent/runtime/field.py, agent/runtime/watcher.py), with a radio bus in a running field:
watchers instead of pollers, one listener per bus, a listener that fails is retried, a live
change of the bus closes and reopens it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.sdk.clock import SystemClock
from agent.runtime.field import Field
from agent.sdk.models import DeviceState
from agent.sim.radio_meters import RadioAir, default_radio_meters
from agent.sim.radio_stick import EmulatedStick
from agent.runtime.watcher import DeviceWatcher
from drivers.wmbus.config import WMBusBusConfig, WMBusDeviceConfig
from drivers.wmbus.driver import WMBusDriver


class _Config:
    """The two sections of a Config the field reads."""

    def __init__(self, buses: list[Any], devices: list[Any]) -> None:
        self.buses = buses
        self.devices = devices


async def test_a_radio_bus_gets_watchers_and_a_listener_that_survives_failures(
        monkeypatch: Any) -> None:
    meters = default_radio_meters(interval=0.2)
    stick = EmulatedStick("im871a", seed=1)
    port = await stick.start_tcp()
    air = RadioAir(meters, time.time, repeat=0, collision=0, seed=1)
    air.sticks.append(stick)
    bus = WMBusBusConfig(id="radio", driver="wmbus", receiver="im871a",
                         port=f"socket://127.0.0.1:{port}")  # no keys: values go BAD
    device = WMBusDeviceConfig(id="flat", bus="radio", address=meters[0].source.ident,
                               interval="200ms", points=[{"name": "volume",
                                                          "record": {"quantity": "volume"}}])
    values: list[Any] = []
    states: list[DeviceState] = []
    field = Field(SystemClock(), lambda d, v, ts: values.append(v),
                  lambda d, s, why: states.append(s))
    calls = 0
    real_listen = WMBusDriver.listen

    async def flaky_listen(self: WMBusDriver) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a driver bug")  # the isolation boundary must catch and retry
        await real_listen(self)

    monkeypatch.setattr(WMBusDriver, "listen", flaky_listen)
    monkeypatch.setattr("agent.runtime.field.LISTEN_BACKOFF_CAP", 0.1)
    playing = asyncio.create_task(air.run())
    try:
        await field.open_buses([bus])
        field.add_pollers(_Config([bus], [device]), ["flat"])  # type: ignore[arg-type]
        assert isinstance(field.pollers["flat"], DeviceWatcher)
        async with asyncio.TaskGroup() as group:
            field.start(group)
            async with asyncio.timeout(10):
                while not values:
                    await asyncio.sleep(0.05)
            driver = field.drivers["radio"]
            assert driver.stats.exceptions == 1 and calls == 2
            assert states[-1] is DeviceState.OK
            assert values[-1][0].quality.value == "bad"  # encrypted, no keys file: not a value
            # A live change of the bus: closed (listener cancelled) and opened again.
            await field.stop_pollers(["flat"])
            await field.close_buses(["radio"])
            assert "radio" not in field.drivers and driver.reception.listeners == {}
            await field.open_buses([bus])
            field.add_pollers(_Config([bus], [device]), ["flat"])  # type: ignore[arg-type]
            heard = len(values)
            async with asyncio.timeout(10):
                while len(values) <= heard:
                    await asyncio.sleep(0.05)
            await field.close()
    finally:
        playing.cancel()
        await asyncio.gather(playing, return_exceptions=True)
        await stick.stop()
