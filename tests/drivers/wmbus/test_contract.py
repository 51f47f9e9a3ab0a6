"""The driver contract kit (tests/drivers/contract.py) on the wireless M-Bus driver: an emulated
iM871A on TCP, on the air the simulated building's radio meters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.sim.radio_meters import RadioAir, default_radio_meters, keys_file
from agent.sim.radio_stick import EmulatedStick
from drivers.wmbus.config import WMBusBusConfig, WMBusDeviceConfig
from drivers.wmbus.driver import WMBusDriver
from tests.drivers.contract import PushCase, PushDriverContract, closed_port


class TestWMBusContract(PushDriverContract):
    @pytest.fixture
    async def case(self, tmp_path: Path) -> AsyncIterator[PushCase]:
        meters = default_radio_meters(interval=0.2)
        keys = keys_file(meters, tmp_path / "keys")
        stick = EmulatedStick("im871a", seed=2)
        port = await stick.start_tcp()

        def bus(at: int) -> WMBusBusConfig:
            return WMBusBusConfig(id="radio", driver="wmbus", receiver="im871a", keys=keys,
                                  port=f"socket://127.0.0.1:{at}", answer_timeout="300ms")

        @contextlib.asynccontextmanager
        async def transmitting() -> AsyncIterator[Any]:
            air = RadioAir(meters, time.time, repeat=0, collision=0, seed=1)
            air.sticks.append(stick)
            task = asyncio.create_task(air.run())
            try:
                yield air
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        first = meters[0]
        device = WMBusDeviceConfig.model_validate(
            {"id": first.name, "bus": "radio", "address": first.source.ident,
             "interval": "0.2s", "points": [{"name": "volume", "record": {"quantity": "volume"}}]})
        try:
            yield PushCase(WMBusDriver, bus=bus(port), absent_bus=bus(closed_port()),
                           device=device, transmitting=transmitting)
        finally:
            await stick.stop()
