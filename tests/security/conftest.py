from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.sim.modbus_building import ModbusBuilding


@pytest.fixture
async def building() -> AsyncIterator[tuple[ModbusBuilding, int]]:
    sim = ModbusBuilding()
    port = await sim.start(0)
    yield sim, port
    await sim.stop()
