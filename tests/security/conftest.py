from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modbus_building import ModbusBuilding
from tests.broker import Mosquitto
from tests.faults.harness import persistent_broker


@pytest.fixture
def building(modbus_building: tuple[ModbusBuilding, int]) -> tuple[ModbusBuilding, int]:
    """The simulated Modbus building of tests/conftest.py, under the name these tests use."""
    return modbus_building


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Here the fault harness's persistent mosquitto (the agent runs as a real process)."""
    server = persistent_broker(tmp_path / "broker")
    server.start()
    yield server
    server.stop()
