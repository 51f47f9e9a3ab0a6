"""The whole simulated building: scenarios change what real Modbus and M-Bus clients read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import loader as config

from agent.config import profiles
from agent.sdk.errors import DeviceUnavailable
from agent.sim import scenario
from agent.sim.building import Building, serve
from drivers.mbus import frames
from drivers.mbus.codec import Record, decode_frame
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver

SPEED = 100.0  # a 4-minute scenario plays in 2.4 s


@pytest.fixture
async def building() -> AsyncIterator[Building]:
    async with Building() as sim:
        yield sim


@pytest.fixture
async def modbus(building: Building) -> AsyncIterator[ModbusDriver]:
    bus = ModbusBusConfig(id="lan", driver="modbus-tcp", host="127.0.0.1",
                          port=building.ports[0])
    async with ModbusDriver(bus) as drv:
        yield drv


def device(building: Building, device_id: str) -> ModbusDeviceConfig:
    """The device as the demo config declares it, merged with its profile."""
    entry = next(d for d in building.gateway_sections()["devices"] if d["id"] == device_id)
    return ModbusDeviceConfig.model_validate(profiles.apply(entry))


async def read(building: Building, driver: ModbusDriver, device_id: str) -> dict[str, Any]:
    return {v.name: v.value for v in await driver.poll(device(building, device_id))}


async def read_meter(port: int, address: int, timeout: float = 1.0) -> list[Record]:
    """One M-Bus read-out as a master does it: SND_NKE, then REQ_UD2."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(timeout):
            writer.write(frames.snd_nke(address))
            assert await reader.readexactly(1) == bytes((frames.ACK,))
            writer.write(frames.req_ud2(address, fcb=True))
            buf = bytearray()
            while True:
                buf += await reader.read(512)
                found = frames.extract_frame(buf)
                if found.frame is not None:
                    return decode_frame(found.frame).records
    finally:
        writer.close()


def record(records: list[Record], quantity: str, storage: int = 0) -> Any:
    return next(r.value for r in records if r.quantity == quantity and r.storage == storage)


def test_every_shipped_scenario_is_valid() -> None:
    names = scenario.installed()
    assert set(names) >= {"vmc-depression-loss", "pump-overflow", "lift-out-of-service",
                          "door-left-open", "water-leak-night", "meter-silent"}
    sim = Building()
    for name in names:
        sim.check(scenario.load(name))


@pytest.mark.parametrize(("steps", "message"), [
    ([{"at": "5s", "device": "elevator", "set": {"fault": True}}], "unknown device 'elevator'"),
    ([{"at": "5s", "device": "vmc", "set": {"pressure": 1}}], "vmc has no variable 'pressure'"),
    ([{"at": "5s", "device": "skydome", "silent": True}], "silence device `io`"),
])
def test_bad_steps_are_refused_before_playing(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Building().check(scenario.parse(steps))


@pytest.mark.parametrize(("data", "message"), [
    ([{"device": "vmc", "set": {}}], "with `at:`"),
    ([{"at": "5s", "device": "vmc"}], "give `device:` with `set:` or `silent:`"),
    ([{"at": "5s", "time": "25:00"}], "HH:MM"),
    ([{"at": "5s", "device": "vmc", "set": {}, "when": 1}], "unknown keys"),
])
def test_bad_scenario_files(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenario.parse(data)


async def test_the_demo_devices_form_a_valid_gateway_config(building: Building,
                                                             tmp_path: Path) -> None:
    sections = building.gateway_sections(keys=tmp_path / "wmbus.keys")
    data = {"gateway": {"id": "gw-demo", "site": "res-les-pins"},
            "mqtt": {"host": "127.0.0.1", "tls": False}, **sections,
            "rules": [r for d in sections["devices"] for r in profiles.rules_for(d)]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = config.load(path)
    kinds = {d.profile for d in cfg.devices}
    assert kinds == {"vmc-caisson", "relevage-pump", "lift-box", "door-contact-modbus",
                     "water-meter", "heat-meter", "heat-cost-allocator"}
    assert {d.bus for d in cfg.devices if d.profile == "heat-cost-allocator"} == {"radio"}
    assert len(cfg.rules) > 20


async def test_every_modbus_device_answers_every_profile_point(building: Building,
                                                               modbus: ModbusDriver) -> None:
    for device_id in ("vmc", "pump", "vmc-spare", "lift", "skydome", "garage-door"):
        values = await modbus.poll(device(building, device_id))
        assert all(v.quality == "good" for v in values), (device_id, values)
    pit = await read(building, modbus, "pump")
    assert pit["float_switch"] in (1, 2, 3) and pit["pump1_fault"] is False
    assert (await read(building, modbus, "lift"))["in_service"] is True


async def test_vmc_depression_loss(building: Building, modbus: ModbusDriver) -> None:
    before = await read(building, modbus, "vmc")
    assert before["exhaust_pressure"] > 100 and before["pressure_fault"] is False
    await building.play("vmc-depression-loss", speed=SPEED)
    after = await read(building, modbus, "vmc")
    assert after["exhaust_pressure"] == 20.0 and after["pressure_fault"] is True
    assert after["general_fault"] is True and after["fan_running"] is False
    assert (await read(building, modbus, "vmc-spare"))["pressure_fault"] is False


async def test_pump_overflow(building: Building, modbus: ModbusDriver) -> None:
    playing = asyncio.create_task(building.play("pump-overflow", speed=SPEED))
    await asyncio.sleep(100 / SPEED)  # 100 s into the storm: the pumps fight it
    storm = await read(building, modbus, "pump")
    assert storm["pump1_running"] or storm["pump2_running"]
    assert storm["float_switch"] != 4 and storm["pump1_fault"] is False
    await playing
    pit = await read(building, modbus, "pump")
    assert pit["high_level_alarm"] is True and pit["float_switch"] == 4
    assert pit["pump1_fault"] is True and pit["collective_fault"] is True
    assert pit["water_level"] >= 1.95
    assert not (pit["pump1_running"] or pit["pump2_running"])


async def test_lift_out_of_service(building: Building, modbus: ModbusDriver) -> None:
    await building.play("lift-out-of-service", speed=SPEED)
    assert await read(building, modbus, "lift") == {"in_service": False, "fault": True,
                                                    "door_open": True, "floor": 3}


async def test_door_left_open(building: Building, modbus: ModbusDriver) -> None:
    assert (await read(building, modbus, "garage-door"))["open"] is False
    await building.play("door-left-open", speed=SPEED)
    assert (await read(building, modbus, "garage-door"))["open"] is True
    assert (await read(building, modbus, "skydome"))["open"] is False  # closed again


async def test_water_leak_night(building: Building) -> None:
    port = building.ports[1]
    index_before = record(await read_meter(port, 2), "volume")
    await building.play("water-leak-night", speed=SPEED)
    assert datetime.fromtimestamp(building.clock(), tz=timezone.utc).hour == 2
    leaking, quiet = await read_meter(port, 2), await read_meter(port, 1)
    # At 02:00 households sleep: a flow that does not stop is the leak (12 l/h).
    assert record(leaking, "volume_flow") == pytest.approx(12 / 3.6e6, rel=0.1)
    assert record(quiet, "volume_flow") == 0
    assert record(leaking, "volume") > index_before  # the index moved on, it never jumps back


async def test_meter_silent(building: Building) -> None:
    port = building.ports[1]
    assert record(await read_meter(port, 3), "volume") > 0
    other_before = record(await read_meter(port, 1), "volume")
    assert other_before == pytest.approx(152.34, abs=0.5)  # m3: the index the meter was given
    await building.play("meter-silent", speed=SPEED)
    with pytest.raises(TimeoutError):
        await read_meter(port, 3, timeout=0.3)
    # the others still answer, with an index that never went back
    assert record(await read_meter(port, 1), "volume") >= other_before


async def test_a_silent_modbus_unit_is_down(building: Building, modbus: ModbusDriver) -> None:
    await building.play(scenario.parse([{"at": 0, "device": "lift", "silent": True}]))
    with pytest.raises(DeviceUnavailable):
        await modbus.poll(device(building, "lift").model_copy(update={"timeout": 0.2}))


async def test_serve_runs_a_scenario_until_cancelled() -> None:
    started: list[Building] = []
    task = asyncio.create_task(serve(0, 0, scenario="door-left-open", speed=SPEED,
                                     ready=started.append))
    await asyncio.sleep(50 / SPEED)
    [sim] = started
    assert sim.io.inputs[:2] == [False, True]  # skydome closed again, garage left open
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", sim.ports[0])
