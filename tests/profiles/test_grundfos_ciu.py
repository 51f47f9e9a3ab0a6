"""The `grundfos-ciu-200` profile against a pymodbus server laid out like a CIU 200 pit map.

The server publishes only the documented holding registers (00218 float switches, 00301-00310
pit data, numbered from 1 so at addresses 217 and 300-309), each with a distinct value, so a
wrong address, table, word order, scale or unit in the profile changes what is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.config import loader as config

from agent.config import profiles
from agent.cli.main import main
from agent.config.loader import Config
from agent.sdk.models import Quality, Reading
from agent.runtime.normalize import Normalizer
from drivers.modbus.driver import ModbusDriver
from rules.alarm import AlarmEvent
from rules.engine import RuleEngine

UNIT = 7
OVERFLOW = 1 << 5  # 00218 bit 5: extra overflow switch
FLOATS_1_TO_5 = 0b1_1111


class CiuPit:
    """A CIU 200 pit map on 127.0.0.1; `holding` (address -> word) can change between polls."""

    def __init__(self) -> None:
        self.holding: dict[int, int] = {
            217: 0b0_0011,                       # floats 1 and 2 on
            300: 123, 301: 250,                  # WaterLevel, MaxWaterLevel (0.01 m)
            302: 0x0001, 303: 0x0002,            # PowerHI/LO (W)
            304: 0x0000, 305: 1500,              # EnergyTripCntHI/LO (kWh)
            306: 0x00AA, 307: 0x00BB,            # OnTimeCnt (not mapped)
            308: 0x0001, 309: 0x0000,            # OprTimeTripCntHI/LO (minutes)
        }
        self.port = 0
        self._server: ModbusTcpServer | None = None

    async def start(self) -> int:
        data = [SimData(a, values=v, datatype=DataType.UINT16)
                for a, v in sorted(self.holding.items())]

        async def action(fc: int, start: int, address: int, count: int, registers: list[int],
                         values: list[int] | list[bool] | None) -> ExcCodes | None:
            del fc, address, count, values
            for index in range(len(registers)):
                registers[index] = self.holding.get(start + index, registers[index])
            return None

        device = SimDevice(id=UNIT, simdata=(
            [SimData(65520, values=False, datatype=DataType.BITS)],
            [SimData(65520, values=False, datatype=DataType.BITS)],
            data,
            [SimData(65520, values=0, datatype=DataType.UINT16)]), action=action)
        self._server = ModbusTcpServer([device], address=("127.0.0.1", 0))
        await self._server.serve_forever(background=True)
        self.port = int(self._server.transport.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        await self._server.shutdown()


@asynccontextmanager
async def pit_server() -> AsyncIterator[CiuPit]:
    pit = CiuPit()
    await pit.start()
    try:
        yield pit
    finally:
        await pit.stop()


def write_config(tmp_path: Path, bus: dict[str, Any], **device: Any) -> Path:
    doc = {
        "gateway": {"id": "gw-test", "site": "site-a"},
        "mqtt": {"host": "127.0.0.1", "tls": False},
        "buses": [{"id": "pits", **bus}],
        "devices": [{"id": "pit-1", "bus": "pits", "address": UNIT,
                     "profile": "grundfos-ciu-200", "timeout": "500ms", **device}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tcp_config(tmp_path: Path, port: int) -> Config:
    return config.load(write_config(
        tmp_path, {"driver": "modbus-tcp", "host": "127.0.0.1", "port": port}))


async def read(cfg: Config, ts: float) -> dict[str, Reading]:
    device = cfg.device("pit-1")
    async with ModbusDriver(cfg.bus("pits")) as driver:
        values = await driver.poll(device)
    return {r.name: r for r in Normalizer(device).readings(values, ts)}


def test_config_check_accepts_a_device_on_the_profile(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"driver": "modbus-rtu", "port": "/dev/ttyUSB0",
                                   "baudrate": 19200, "parity": "E", "stopbits": 1})
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    profile = profiles.load("grundfos-ciu-200")
    assert (f"OK (1 buses, 1 devices, {len(profile['points'])} points, "
            f"{len(profile['rules'])} rules)") in result.output


async def test_values_units_and_scaling_from_a_real_server(tmp_path: Path) -> None:
    async with pit_server() as pit:
        readings = await read(tcp_config(tmp_path, pit.port), ts=1000.0)
    got = {name: (r.value, r.unit) for name, r in readings.items()}
    assert got == {
        "float1": (True, None), "float2": (True, None), "float3": (False, None),
        "float4": (False, None), "float5": (False, None), "overflow_switch": (False, None),
        "water_level": (pytest.approx(1.23), "m"),
        "max_water_level": (pytest.approx(2.5), "m"),
        "power": (65538, "W"),                            # 0x0001_0002, high word first
        "energy": (pytest.approx(1500 * 3.6e6), "J"),     # kWh -> J (SenML primary unit)
        "operating_time": (pytest.approx(65536 * 60), "s"),  # minutes -> s
    }


async def test_the_overflow_float_raises_the_profiles_critical_alarm(tmp_path: Path) -> None:
    async with pit_server() as pit:
        cfg = tcp_config(tmp_path, pit.port)
        engine = RuleEngine(cfg.rules)

        async def poll(now: float) -> list[AlarmEvent]:
            events: list[AlarmEvent] = []
            for reading in (await read(cfg, now)).values():
                events += engine.on_reading(reading, now)
            return events + engine.tick(now)

        # Floats 1-5 all on (high water) without the extra overflow switch: no overflow alarm.
        pit.holding[217] = FLOATS_1_TO_5
        assert await poll(0.0) == []
        assert await poll(10.0) == []
        # The overflow switch on: raised once it has held for the profile's 5 s, not before.
        pit.holding[217] = FLOATS_1_TO_5 | OVERFLOW
        assert await poll(20.0) == []
        [raised] = await poll(26.0)
        assert (raised.kind, raised.alarm, raised.severity) == ("raised", "pit-1-overflow",
                                                                "critical")
        assert (raised.device, raised.point, raised.since) == ("pit-1", "overflow_switch", 20.0)
        # Back below the overflow float: cleared.
        pit.holding[217] = FLOATS_1_TO_5
        [cleared] = await poll(30.0)
        assert (cleared.kind, cleared.alarm) == ("cleared", "pit-1-overflow")


async def test_not_available_reads_bad_and_raises_nothing(tmp_path: Path) -> None:
    """0xFFFF is the CIU's "not available": quality bad, never 655.35 m, 4294967295 W or every
    float on (which would raise a false critical overflow)."""
    async with pit_server() as pit:
        pit.holding.update({217: 0xFFFF, 300: 0xFFFF, 302: 0xFFFF, 303: 0xFFFF})
        cfg = tcp_config(tmp_path, pit.port)
        readings = await read(cfg, ts=0.0)
        engine = RuleEngine(cfg.rules)
        events = [e for t in (0.0, 10.0) for r in (await read(cfg, t)).values()
                  for e in engine.on_reading(r, t)] + engine.tick(10.0)
    bad = {n for n, r in readings.items() if r.quality is Quality.BAD}
    assert bad == {"float1", "float2", "float3", "float4", "float5", "overflow_switch",
                   "water_level", "power"}
    assert all(readings[n].value is None for n in bad)
    assert readings["max_water_level"].value == pytest.approx(2.5)  # its neighbours are fine
    assert events == []
