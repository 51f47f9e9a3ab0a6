from __future__ import annotations

import pytest

from agent.sim.modbus_building import ModbusBuilding


@pytest.fixture
def building(modbus_building: tuple[ModbusBuilding, int]) -> tuple[ModbusBuilding, int]:
    """The simulated Modbus building of tests/conftest.py, under the name these tests use."""
    return modbus_building
