"""The Modbus driver and `batigate scan modbus` against libmodbus RTU slaves on the RS-485
stand-in (rs485.py): bytes paced at the line's speed, the silences between frames checked.

A pseudo-terminal cannot do parity (Linux refuses PARENB on a pty; test_port.py uses exactly
that), so the "8E1-like" line here is 8N2: also 11 bits per character, hence the same character
time and the same t3.5 (4.01 ms at 9600 baud).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.cli.main import main
from agent.sdk.errors import DriverError
from agent.sdk.models import Quality
from drivers.modbus import link
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from tests.cli.helpers import write_config
from tests.interop.modbus.conftest import Rs485Line, rs485_line

LINES = [pytest.param(9600, "N", 2, id="9600-11bit"), pytest.param(19200, "N", 1, id="19200-8N1")]


def rtu_bus(port: str, baud: int, parity: str, stopbits: int) -> dict[str, Any]:
    return {"id": "rs485", "driver": "modbus-rtu", "port": port, "baudrate": baud,
            "parity": parity, "stopbits": stopbits}


def device(unit: int, points: list[dict[str, Any]], timeout: str = "1s") -> ModbusDeviceConfig:
    # 1 s: the stand-in paces every byte in Python and libmodbus answers through it; on a loaded
    # CI machine 300 ms was sometimes not enough for a unit that is there.
    return ModbusDeviceConfig.model_validate({"id": f"unit-{unit}", "bus": "rs485",
                                              "address": unit, "poll": "1s", "timeout": timeout,
                                              "points": points})


POINTS = [{"name": "h0", "register": "holding:0"},
          {"name": "wide", "register": "holding:4", "type": "uint32"},
          {"name": "hole", "register": "holding:7"},
          {"name": "in1", "register": "input:1"},
          {"name": "coil1", "register": "coils:1"},
          {"name": "setpoint", "register": "holding:12", "writable": True},
          {"name": "hole_w", "register": "holding:20", "writable": True}]


async def _exercise(line: Rs485Line, baud: int, parity: str, stopbits: int) -> None:
    bus = ModbusBusConfig.model_validate(rtu_bus(line.port, baud, parity, stopbits))
    devices = [device(1, POINTS), device(2, POINTS)]
    async with ModbusDriver(bus) as driver:
        for round_ in range(3):
            for dev in devices:  # the unit changes at every poll, as on a real line
                values = {v.name: v for v in await driver.poll(dev)}
                unit = dev.address
                assert values["h0"].value == unit * 100
                assert values["wide"].value == ((unit * 100 + 4) << 16) | (unit * 100 + 5)
                assert values["in1"].value == 1001 and values["coil1"].value is True
                assert values["hole"].quality is values["hole_w"].quality is Quality.BAD
                assert values["hole"].reason == ("refused by the device: exception 02 "
                                                 "(illegal data address)")
                await driver.write(dev, dev.points[-2], 1000 + round_)
                with pytest.raises(DriverError, match="holding:20 with exception 02"):
                    await driver.write(dev, dev.points[-1], 1)
                [setpoint] = [v for v in await driver.poll(dev) if v.name == "setpoint"]
                assert setpoint.value == 1000 + round_
        with pytest.raises(DriverError, match="unit 9 .*no answer within 0.3s"):
            await driver.poll(device(9, POINTS, "300ms"))
    await asyncio.sleep(0.05)  # the stand-in writes a frame down once the line is quiet


@pytest.mark.parametrize(("baud", "parity", "stopbits"), LINES)
async def test_the_driver_keeps_the_silence_between_frames(slave_bin: Path, tmp_path: Path,
                                                           baud: int, parity: str,
                                                           stopbits: int) -> None:
    with rs485_line(slave_bin, tmp_path, baud=baud, parity=parity, stopbits=stopbits,
                    units="1,2") as line:
        await _exercise(line, baud, parity, stopbits)
        frames = line.frames()
    from_master = [f for f in frames if f["from"] == "m"]
    assert len(from_master) >= 60 and len(frames) - len(from_master) >= 55
    assert {f["unit"] for f in frames} == {1, 2, 9}
    assert line.master_violations() == []
    t35 = 0.00175 if baud > 19200 else 3.5 * 11 / baud
    silences = [f["silence"] for f in from_master if f["silence"] is not None]
    assert min(silences) >= t35


async def test_without_the_silence_the_stand_in_sees_frames_too_close(
        slave_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: with the silence of before the fix (`gap`, 0), the master starts its
    next request about half a millisecond after the answer, far under t3.5 (4.01 ms)."""
    monkeypatch.setattr(link, "inter_frame_silence", lambda bus: bus.gap)
    with rs485_line(slave_bin, tmp_path, baud=9600, parity="N", stopbits=2,
                    units="1,2") as line:
        await _exercise(line, 9600, "N", 2)
        frames = line.frames()
    from_master = [f for f in frames if f["from"] == "m" and f["silence"] is not None]
    violations = line.master_violations()
    assert len(violations) >= len(from_master) * 0.6
    assert statistics.median(f["silence"] for f in violations) < 0.00401


async def test_gap_lengthens_the_silence(slave_bin: Path, tmp_path: Path) -> None:
    with rs485_line(slave_bin, tmp_path, baud=19200, parity="N", stopbits=1) as line:
        bus = ModbusBusConfig.model_validate({**rtu_bus(line.port, 19200, "N", 1),
                                              "gap": "20ms"})
        async with ModbusDriver(bus) as driver:
            for _ in range(3):
                await driver.poll(device(1, POINTS))
        await asyncio.sleep(0.05)
        frames = line.frames()
    silences = [f["silence"] for f in frames if f["from"] == "m" and f["silence"] is not None]
    assert len(silences) >= 11 and min(silences) >= 0.020


async def test_scan_over_rtu_finds_the_units_on_the_line(slave_bin: Path,
                                                         tmp_path: Path) -> None:
    with rs485_line(slave_bin, tmp_path, baud=19200, parity="N", stopbits=1,
                    units="1,3") as line:
        path = write_config(tmp_path, buses=[rtu_bus(line.port, 19200, "N", 1)], devices=[])
        result = await asyncio.to_thread(
            CliRunner().invoke, main, ["scan", "modbus", "--bus", "rs485", "--ids", "1-4",
                                       "--timeout", "0.3", "--json", "--config", str(path)])
        await asyncio.sleep(0.05)
        violations = line.master_violations()
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)["found"]
    # libmodbus RTU does not implement FC 43: no identification, and no unit lost to it
    assert found == [{"unit": 1, "identification": None}, {"unit": 3, "identification": None}]
    assert violations == []
