"""The simulated building: a real Modbus TCP server whose devices follow an injectable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.sdk.errors import DeviceUnavailable, DriverError
from agent.sdk.models import Quality
from agent.sim.modbus_building import DEMO_POINTS, LiftStation, ModbusBuilding
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from tests.clocks import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
async def building(clock: FakeClock) -> AsyncIterator[ModbusBuilding]:
    sim = ModbusBuilding(clock)
    await sim.start(0)
    yield sim
    await sim.stop()


@pytest.fixture
async def driver(building: ModbusBuilding) -> AsyncIterator[ModbusDriver]:
    bus = ModbusBusConfig(id="lan", driver="modbus-tcp", host="127.0.0.1", port=building.port)
    async with ModbusDriver(bus) as drv:
        yield drv


def unit(address: int, **extra: object) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({"id": f"unit-{address}", "bus": "lan",
                                              "address": address, "timeout": 0.2,
                                              "points": DEMO_POINTS[address], **extra})


async def read(driver: ModbusDriver, address: int) -> dict[str, object]:
    values = await driver.poll(unit(address))
    assert all(v.quality is Quality.GOOD for v in values)
    return {v.name: v.value for v in values}


async def test_start_returns_a_free_port_and_every_unit_answers(
        building: ModbusBuilding, driver: ModbusDriver) -> None:
    assert building.port > 0
    vmc, pit, spare = await read(driver, 1), await read(driver, 2), await read(driver, 3)
    assert 110 <= vmc["exhaust_pressure"] <= 130  # type: ignore[operator]
    assert vmc["fan_running"] is True and vmc["pressure_fault"] is False
    assert vmc["filter_clogged"] is False and vmc["general_fault"] is False
    assert 1000 < vmc["fan_speed"] < 2000  # type: ignore[operator]
    assert pit["water_level"] == 0.8 and pit["pump1_starts"] == 104_211
    assert pit["run_hours"] == 15_230 and pit["motor_current"] == 0.0
    assert spare["pressure_setpoint"] == 110


async def test_request_count_shows_coalescing(building: ModbusBuilding,
                                              driver: ModbusDriver) -> None:
    for address in (1, 2, 3):
        await driver.poll(unit(address))
    # VMC: input 1-4, input 21, holding 3, coils 0, discrete 0-1 -> 5 reads for 8 points;
    # pit: holding 25, 61, 139, 300-307 -> 4 reads for 8 points.
    assert dict(building.request_count) == {1: 5, 2: 4, 3: 5}
    assert driver.stats.requests == 14


async def test_vmc_pressure_drifts_within_its_band(clock: FakeClock, driver: ModbusDriver) -> None:
    seen = []
    for _ in range(40):
        clock.now += 97
        seen.append((await read(driver, 1))["exhaust_pressure"])
    assert all(110 <= p <= 130 for p in seen)  # type: ignore[operator]
    assert max(seen) - min(seen) > 5  # type: ignore[operator]  # it moves


async def test_vmc_obeys_setpoint_and_fan_enable(clock: FakeClock, driver: ModbusDriver) -> None:
    device = unit(1)
    points = {p.name: p for p in device.points}
    await driver.write(device, points["pressure_setpoint"], 200)
    clock.now += 60
    vmc = await read(driver, 1)
    assert vmc["pressure_setpoint"] == 200
    assert 190 <= vmc["exhaust_pressure"] <= 210  # type: ignore[operator]
    await driver.write(device, points["fan_enable"], False)
    vmc = await read(driver, 1)
    assert vmc["fan_running"] is False and vmc["fan_speed"] == 0
    assert vmc["pressure_fault"] is True and vmc["exhaust_pressure"] < 1  # type: ignore[operator]


async def test_vmc_refuses_an_absurd_setpoint(driver: ModbusDriver) -> None:
    points = [dict(p) for p in DEMO_POINTS[1]]
    for p in points:
        p.pop("min", None), p.pop("max", None)  # only the device itself checks now
    device = unit(1, points=points)
    setpoint = next(p for p in device.points if p.name == "pressure_setpoint")
    with pytest.raises(DriverError, match="exception 03"):
        await driver.write(device, setpoint, 900)


async def test_pit_fills_and_empties_with_alternating_pumps(clock: FakeClock,
                                                            driver: ModbusDriver) -> None:
    levels, runs = [], []
    first = await read(driver, 2)
    for _ in range(240):  # two hours in 30 s steps
        clock.now += 30
        pit = await read(driver, 2)
        levels.append(pit["water_level"])
        runs.append((pit["pump1_running"], pit["pump2_running"]))
        if pit["pump1_running"] or pit["pump2_running"]:
            assert pit["motor_current"] > 3.5  # type: ignore[operator]
        else:
            assert pit["motor_current"] == 0.0
    assert max(levels) >= LiftStation.START_CM / 100  # type: ignore[operator]
    assert min(levels) <= (LiftStation.STOP_CM + 10) / 100  # type: ignore[operator]
    assert (True, False) in runs and (False, True) in runs  # duty alternates between the pumps
    starts = pit["pump1_starts"] + pit["pump2_starts"]  # type: ignore[operator]
    assert starts - first["pump1_starts"] - first["pump2_starts"] >= 3  # type: ignore[operator]
    assert pit["run_hours"] >= first["run_hours"]  # type: ignore[operator]


async def test_high_level_alarm_when_inflow_beats_both_pumps(clock: FakeClock,
                                                             building: ModbusBuilding,
                                                             driver: ModbusDriver) -> None:
    pit = building.devices[2]
    assert isinstance(pit, LiftStation)
    pit.inflow = lambda t: 0.8  # type: ignore[method-assign]  # a storm: 0.8 cm/s in, 0.5 out
    clock.now += 600
    state = await read(driver, 2)
    assert state["pump1_running"] is True and state["pump2_running"] is True
    assert state["high_level_alarm"] is True


async def test_silent_unit_times_out_then_comes_back(building: ModbusBuilding,
                                                     driver: ModbusDriver) -> None:
    building.set_silent(3, True)
    with pytest.raises(DeviceUnavailable, match="no answer"):
        await driver.poll(unit(3))
    assert (await read(driver, 1))["fan_running"] is True  # the others are not affected
    building.set_silent(3, False)
    assert (await read(driver, 3))["fan_running"] is True
    assert driver.stats.timeouts == 1


async def test_unknown_unit_is_silent_like_an_rs485_line(driver: ModbusDriver) -> None:
    device = ModbusDeviceConfig(id="ghost", bus="lan", address=9, timeout=0.2,
                                points=[{"name": "x",  # type: ignore[list-item]
                                         "register": "holding:0"}])
    with pytest.raises(DeviceUnavailable):
        await driver.poll(device)


async def test_garbage_replies_are_counted(building: ModbusBuilding,
                                           driver: ModbusDriver) -> None:
    building.set_garbage(1, True)
    with pytest.raises(DeviceUnavailable, match="no valid answer"):
        await driver.poll(unit(1))
    assert driver.stats.garbage == 1
    building.set_garbage(1, False)
    assert (await read(driver, 1))["fan_running"] is True


async def test_rtu_framed_building_over_socket_url(clock: FakeClock) -> None:
    sim = ModbusBuilding(clock, framer="rtu")
    port = await sim.start()
    bus = ModbusBusConfig(id="lan", driver="modbus-rtu", port=f"socket://127.0.0.1:{port}")
    try:
        async with ModbusDriver(bus) as drv:
            assert (await read(drv, 2))["water_level"] == 0.8
            sim.set_garbage(2, True)
            with pytest.raises(DeviceUnavailable):
                await drv.poll(unit(2))
            assert drv.stats.garbage == 1
    finally:
        await sim.stop()
