from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.sim.modbus_building import ModbusBuilding
from tests.broker import Mosquitto

# Tests read the English messages whatever the machine's locale; the tests of French set it.
os.environ["BATIGATE_LANG"] = "en"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def modbus_building() -> AsyncIterator[tuple[ModbusBuilding, int]]:
    """The simulated building's Modbus TCP server on a free port: (server, port)."""
    sim = ModbusBuilding()
    port = await sim.start(0)
    yield sim, port
    await sim.stop()
