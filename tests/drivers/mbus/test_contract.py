"""The driver contract kit (tests/drivers/contract.py) on the M-Bus driver and the M-Bus
simulator (meters 1-5 and 10-12 behind a TCP converter)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.mbus.config import MBusBusConfig, MBusDeviceConfig
from drivers.mbus.driver import MBusDriver
from drivers.mbus.simulator import MBusSimulator, default_meters
from tests.drivers.contract import PolledCase, PolledDriverContract, closed_port


def bus(port: int) -> MBusBusConfig:
    return MBusBusConfig.model_validate({"id": "meters", "driver": "mbus",
                                         "port": f"socket://127.0.0.1:{port}", "retries": 0})


def meter(device_id: str, address: int, points: list[dict[str, Any]]) -> MBusDeviceConfig:
    return MBusDeviceConfig.model_validate({"id": device_id, "bus": "meters", "address": address,
                                            "timeout": "200ms", "points": points})


def rec(name: str, quantity: str) -> dict[str, Any]:
    return {"name": name, "record": {"quantity": quantity, "storage": 0}}


class TestMBusContract(PolledDriverContract):
    @pytest.fixture
    async def case(self) -> AsyncIterator[PolledCase]:
        sim = MBusSimulator(default_meters())
        await sim.start()
        water = meter("water-1", 1, [rec("volume", "volume")])
        try:
            yield PolledCase(
                MBusDriver, bus=bus(sim.port), absent_bus=bus(closed_port()), device=water,
                dead_device=meter("nobody", 40, [rec("volume", "volume")]),
                # a water meter has no energy record: that point reads bad, the meter is up
                refused=(meter("water-1x", 1, [rec("volume", "volume"),
                                               rec("energy", "energy")]), "energy"),
                read_only=(water, water.points[0]))
        finally:
            await asyncio.sleep(0.05)  # let the simulator see the master's EOF first
            await sim.stop()
