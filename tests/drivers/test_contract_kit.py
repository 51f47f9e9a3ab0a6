"""The contract kit catches the faults it is for: run against drivers broken on purpose (the
Modbus driver with one rule of the contract undone), each of its checks fails."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from agent.sdk.config import DeviceConfig
from agent.sdk.errors import DeviceUnavailable
from agent.sdk.models import PointValue
from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from tests.drivers.contract import PolledCase, PolledDriverContract, closed_port


class ConnectsAtOnce(ModbusDriver):
    """Fails to open when the peer is absent (the agent would not start)."""

    async def __aenter__(self) -> Any:
        await super().__aenter__()
        raise DeviceUnavailable("cannot connect")


class CountsNothing(ModbusDriver):
    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        values = await super().poll(device)
        self.stats.requests = 0
        return values


class HidesDeadDevices(ModbusDriver):
    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        try:
            return await super().poll(device)
        except DeviceUnavailable:
            return []


@pytest.fixture
def case(modbus_building: tuple[ModbusBuilding, int]) -> PolledCase:
    _, port = modbus_building

    def device(device_id: str, unit: int) -> ModbusDeviceConfig:
        return ModbusDeviceConfig.model_validate({"id": device_id, "bus": "lan", "address": unit,
                                                  "timeout": "300ms", "points": DEMO_POINTS[1]})

    vmc = device("vmc", 1)
    return PolledCase(ModbusDriver,
                      bus=ModbusBusConfig(id="lan", driver="modbus-tcp", host="127.0.0.1",
                                          port=port),
                      absent_bus=ModbusBusConfig(id="lan", driver="modbus-tcp",
                                                 host="127.0.0.1", port=closed_port()),
                      # `refused` is not checked here (the Modbus contract test does)
                      device=vmc, dead_device=device("nobody", 99), refused=(vmc, "fan_speed"),
                      read_only=(vmc, vmc.points[0]))


@pytest.mark.parametrize(("broken", "check", "fault"), [
    (ConnectsAtOnce, "test_opening_with_an_absent_peer_does_not_raise", DeviceUnavailable),
    (CountsNothing, "test_a_good_poll_is_counted_and_answers_every_point", AssertionError),
    (HidesDeadDevices, "test_a_dead_device_is_unavailable_counted_and_bounded",
     pytest.fail.Exception),
])
async def test_each_check_fails_on_a_driver_that_breaks_it(
        case: PolledCase, broken: type, check: str, fault: type[BaseException]) -> None:
    contract = PolledDriverContract()
    await getattr(contract, check)(case)  # the real driver passes
    with pytest.raises(fault):
        await getattr(contract, check)(dataclasses.replace(case, driver=broken))
