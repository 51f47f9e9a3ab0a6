"""The driver contract kit (tests/drivers/contract.py) on the Modbus driver and the simulated
building's Modbus TCP server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from tests.drivers.contract import PolledCase, PolledDriverContract, closed_port


def device(device_id: str, unit: int, points: list[dict]) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({"id": device_id, "bus": "lan", "address": unit,
                                              "timeout": "300ms", "points": points})


class TestModbusContract(PolledDriverContract):
    @pytest.fixture
    async def case(self, modbus_building: tuple[ModbusBuilding, int]
                   ) -> AsyncIterator[PolledCase]:
        _, port = modbus_building
        vmc = device("vmc", 1, DEMO_POINTS[1])
        # A register the VMC does not have: it answers exception 02 for that read only.
        refused = device("vmc-x", 1, [*DEMO_POINTS[1][:2],
                                      {"name": "absent", "register": "holding:9000",
                                       "type": "uint16"}])
        yield PolledCase(
            ModbusDriver,
            bus=ModbusBusConfig(id="lan", driver="modbus-tcp", host="127.0.0.1", port=port),
            absent_bus=ModbusBusConfig(id="lan", driver="modbus-tcp", host="127.0.0.1",
                                       port=closed_port()),
            device=vmc, dead_device=device("nobody", 99, DEMO_POINTS[1]),
            refused=(refused, "absent"),
            read_only=(vmc, next(p for p in vmc.points if not p.writable)))
