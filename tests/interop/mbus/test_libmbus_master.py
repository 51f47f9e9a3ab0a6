"""libmbus as the M-Bus master, our simulator as the bus: an implementation we did not write.

libmbus is not packaged for Debian bookworm; the npm package node-mbus bundles its C sources and
builds them with node-gyp (`install-node-mbus.sh`, run by `.ci/run`, or here on first use).
`libmbus_master.js` drives libmbus' own master code (SND_NKE, REQ_UD2 with its FCB handling and
multi-telegram read-out, secondary selection, the wildcard scan) and prints what libmbus
decoded. Each value is compared with what our driver reads and our codec decodes from the
same meter at the same (frozen) simulated time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from drivers.mbus.codec import Record
from drivers.mbus.config import MBusBusConfig, MBusDeviceConfig
from drivers.mbus.driver import MBusDriver, MeterLink
from drivers.mbus.simulator import HeatMeter, MBusSimulator, SimMeter, WaterMeter
from tests.interop.node import install

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
NODE_MBUS = REPO / "build" / "interop" / "node-mbus"
T0 = datetime(2026, 1, 15, 18, 45, tzinfo=timezone.utc).timestamp()  # evening: water flows
TIMEOUT_MS = 60  # libmbus' answer timeout: the simulator answers within a few ms

# libmbus' unit text -> (our quantity, our SenML unit, factor from libmbus' number to ours).
# A unit not listed fails the test: a new simulator record needs its line here.
UNITS: dict[str, tuple[str, str | None, Fraction]] = {
    "Fabrication number": ("fabrication_no", None, Fraction(1)),
    "Volume (m m^3)": ("volume", "m3", Fraction(1, 1000)),
    "Volume flow (m m^3/h)": ("volume_flow", "m3/s", Fraction(1, 1000 * 3600)),
    "Energy (Wh)": ("energy", "J", Fraction(3600)),
    "Power (W)": ("power", "W", Fraction(1)),
    "Flow temperature (1e-2 deg C)": ("flow_temperature", "Cel", Fraction(1, 100)),
    "Return temperature (1e-2 deg C)": ("return_temperature", "Cel", Fraction(1, 100)),
    "Temperature Difference (1e-2  deg C)": ("temperature_difference", "K", Fraction(1, 100)),
    "Error flags": ("error_flags", None, Fraction(1)),
}
DATES = {"Time Point (time & date)": "date_time", "Time Point (date)": "date"}
FUNCTIONS = {"Instantaneous value": "instantaneous", "Maximum value": "maximum",
             "Minimum value": "minimum", "Value during error state": "error"}


class FrozenClock:
    def __call__(self) -> float:
        return T0


def building(clock: FrozenClock) -> list[SimMeter]:
    """Three meters left at factory address 0 (two water, one two-telegram heat meter) and two
    meters with their own primary address."""
    return [
        WaterMeter(0, "41000001", "SAP", 0x15, 0x07, clock, daily_litres=320, base_litres=15_234),
        WaterMeter(0, "41000002", "ITW", 0x20, 0x16, clock, leak_lph=6.0, base_litres=2_000),
        HeatMeter(0, "51000003", "KAM", 0x34, 0x04, clock, base_wh=25_000_000, history_months=12),
        WaterMeter(1, "61000011", "SAP", 0x15, 0x06, clock, daily_litres=180, base_litres=98_770),
        HeatMeter(10, "71000010", "KAM", 0x34, 0x04, clock, nominal_w=6000, base_wh=9_120_000),
    ]


def libmbus_secondary(meter: SimMeter) -> str:
    """The 16 hex digits libmbus prints and takes: id, manufacturer bytes, version, medium."""
    return meter.ident + meter.secondary_address[4:].hex().upper()


@pytest.fixture(scope="module")
def node_mbus() -> Path:
    install(HERE / "install-node-mbus.sh", "the libmbus interop tests (node-mbus)")
    return NODE_MBUS


@pytest.fixture
async def sim() -> AsyncIterator[MBusSimulator]:
    bus = MBusSimulator(building(FrozenClock()), FrozenClock())
    await bus.start()
    yield bus
    await asyncio.sleep(0.05)
    await bus.stop()


async def libmbus(node_mbus: Path, sim: MBusSimulator, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(HERE / "libmbus_master.js"), str(node_mbus), "127.0.0.1", str(sim.port),
        str(TIMEOUT_MS), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")
    return json.loads(out)


async def our_records(sim: MBusSimulator, **addressing: Any) -> list[Record]:
    bus = MBusBusConfig.model_validate({"id": "meters", "driver": "mbus",
                                        "port": f"socket://127.0.0.1:{sim.port}"})
    device = MBusDeviceConfig.model_validate({"id": "m", "bus": "meters", "timeout": "300ms",
                                              **addressing})
    async with MBusDriver(bus) as driver:
        readout = await driver.read_out(device, MeterLink())
    assert readout.complete
    return readout.records


def assert_same(theirs: dict[str, Any], ours: list[Record], meter: SimMeter) -> int:
    """libmbus' decode of a read-out against ours, record by record; returns the count."""
    assert int(theirs["SlaveInformation"]["Id"]) == int(meter.ident)
    assert theirs["SlaveInformation"]["Manufacturer"] == meter.manufacturer
    assert int(theirs["SlaveInformation"]["Version"]) == meter.version
    records = theirs["DataRecord"]
    assert len(records) == len(ours), (records, ours)
    for index, (their, our) in enumerate(zip(records, ours, strict=True)):
        where = f"{meter.ident} record {index}: libmbus {their}, ours {our}"
        if their["Function"] == "More records follow":
            assert our.quantity == "manufacturer_data" and our.dib == b"\x1f", where
            continue
        assert FUNCTIONS[their["Function"]] == our.function, where
        assert int(their["StorageNumber"]) == our.storage, where
        unit = their["Unit"]
        if unit in DATES:
            assert (our.quantity, our.value) == (DATES[unit], their["Value"]), where
            continue
        assert unit in UNITS, f"{where}: add libmbus unit {unit!r} to UNITS"
        quantity, senml_unit, factor = UNITS[unit]
        assert (our.quantity, our.unit) == (quantity, senml_unit), where
        expected = Fraction(their["Value"]) * factor
        assert our.value == pytest.approx(float(expected), rel=1e-12, abs=1e-15), where
    return len(records)


async def test_libmbus_reads_the_meters_at_their_primary_address_like_we_do(
    node_mbus: Path, sim: MBusSimulator
) -> None:
    got = await libmbus(node_mbus, sim, "data", "1", "10")
    for address in (1, 10):
        (meter,) = sim.at(address)
        assert "data" in got[str(address)], got[str(address)]
        ours = await our_records(sim, address=address)
        assert assert_same(got[str(address)]["data"], ours, meter) >= 7


async def test_libmbus_cannot_read_address_0_where_three_meters_collide(
    node_mbus: Path, sim: MBusSimulator
) -> None:
    got = await libmbus(node_mbus, sim, "data", "0")
    assert "Failed to send/receive" in got["0"]["error"]


async def test_libmbus_scan_finds_every_meter_by_secondary_address(
    node_mbus: Path, sim: MBusSimulator
) -> None:
    got = await libmbus(node_mbus, sim, "scan-secondary")
    assert sorted(got["secondary"]) == sorted(libmbus_secondary(m) for m in sim.bus)
    # The selections libmbus sent went through our simulator's wildcard matching.
    assert sim.frames_in > 20


async def test_libmbus_reads_the_meters_sharing_address_0_by_secondary_like_we_do(
    node_mbus: Path, sim: MBusSimulator
) -> None:
    shared = sim.at(0)
    got = await libmbus(node_mbus, sim, "data", *(libmbus_secondary(m) for m in shared))
    for meter in shared:
        theirs = got[libmbus_secondary(meter)]
        assert "data" in theirs, theirs
        ours = await our_records(sim, secondary=meter.ident, manufacturer=meter.manufacturer)
        count = assert_same(theirs["data"], ours, meter)
        # The heat meter's read-out spans two telegrams (DIF 0x1F, then 12 monthly indexes).
        assert count == (34 if isinstance(meter, HeatMeter) else 7)
