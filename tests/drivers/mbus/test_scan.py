"""`scan` against the slave simulator: every meter by primary and by secondary address, and
what it makes of meters it cannot tell apart (twins, several meters at factory address 0)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from agent.sdk.errors import DeviceUnavailable
from agent.sdk.models import Quality
from drivers.mbus import frames
from drivers.mbus.driver import MBusDriver
from drivers.mbus.scan import scan
from drivers.mbus.simulator import HeatMeter, MBusSimulator, WaterMeter
from tests.clocks import FakeClock
from tests.drivers.mbus.helpers import RecordingBus, bus_config, by_name, meter, rec

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc).timestamp()


async def test_scan_finds_every_meter_by_primary_and_by_secondary(sim: RecordingBus) -> None:
    # A fast line keeps 251 empty addresses quick; the simulator answers within a millisecond.
    result = await scan(bus_config(sim, baudrate=38400), timeout=0.012)
    expected = {(m.primary, m.ident) for m in sim.meters.values()}
    primary = [m for m in result.meters if m.how == "primary"]
    secondary = [m for m in result.meters if m.how == "secondary"]
    assert {(m.primary, m.id) for m in primary} == expected
    assert {(m.primary, m.id) for m in secondary} == expected
    assert result.collisions == []
    kam = next(m for m in secondary if m.id == "31000012")
    assert (kam.manufacturer, kam.medium, kam.medium_code) == ("KAM", "heat_outlet", 4)
    assert kam.config() == {"secondary": "31000012", "manufacturer": "KAM"}
    assert next(m for m in primary if m.id == "21000015").config() == {"address": 5}
    # the walk descended where several ids share a prefix: 2100000x collided before splitting
    selects = [f for f in sim.heard if f[0] == frames.START_LONG and f[6] == frames.CI_SELECT]
    assert frames.select_secondary("2100000F") in selects
    assert frames.select_secondary("21000002") in selects  # 2100000x: all 8 digits needed
    assert frames.select_secondary("2100001F") in selects  # 21000015 alone under 2100001 ...
    assert frames.select_secondary("21000015") not in selects  # ... so no deeper there


async def test_scan_reports_meters_it_cannot_tell_apart(clock: FakeClock) -> None:
    twins = [WaterMeter(1, "12345678", "SAP", 1, 7, clock),
             WaterMeter(2, "12345678", "ITW", 1, 7, clock),
             WaterMeter(3, "12345679", "SAP", 1, 7, clock)]
    sim = MBusSimulator(twins, clock)
    await sim.start()
    try:
        result = await scan(bus_config(sim, baudrate=38400), primary=False, timeout=0.012)
        assert [m.id for m in result.meters] == ["12345679"]
        assert result.collisions == ["secondary 12345678"]
    finally:
        await asyncio.sleep(0.05)
        await sim.stop()


# ------------------------------------------------- several meters at factory address 0


def factory_bus(clock: FakeClock) -> list[WaterMeter | HeatMeter]:
    """Three meters left at the factory primary address 0 beside one configured at 7."""
    return [WaterMeter(0, "41000001", "SAP", 0x15, 0x07, clock, base_litres=1000),
            WaterMeter(0, "41000002", "ITW", 0x20, 0x16, clock, base_litres=2000),
            HeatMeter(0, "51000003", "KAM", 0x34, 0x04, clock, base_wh=5_000_000,
                      history_months=2),
            WaterMeter(7, "41000007", "SAP", 0x15, 0x07, clock, base_litres=7000)]


async def test_scan_of_meters_sharing_address_0(clock: FakeClock) -> None:
    sim = RecordingBus(factory_bus(clock), clock)
    await sim.start()
    try:
        result = await scan(bus_config(sim, baudrate=38400), timeout=0.012)
        primary = [(m.primary, m.id) for m in result.meters if m.how == "primary"]
        secondary = {m.id: m for m in result.meters if m.how == "secondary"}
        assert primary == [(7, "41000007")]  # address 0 answers, but garbled
        assert result.collisions == ["primary 0"]
        assert set(secondary) == {"41000001", "41000002", "51000003", "41000007"}
        assert secondary["41000002"].config() == {"secondary": "41000002", "manufacturer": "ITW"}
        assert secondary["51000003"].primary == 0
    finally:
        await asyncio.sleep(0.05)
        await sim.stop()


async def test_driver_reads_meters_sharing_address_0_by_secondary_only(clock: FakeClock) -> None:
    sim = RecordingBus(factory_bus(clock), clock)
    await sim.start()
    try:
        async with MBusDriver(bus_config(sim)) as drv:
            # By primary address 0: three meters answer at once, nothing readable.
            with pytest.raises(DeviceUnavailable, match="garbled"):
                await drv.poll(meter(address=0, points=[rec("volume", "volume")]))
            a = meter(secondary="41000001", points=[rec("volume", "volume")])
            b = meter(secondary="41000002", manufacturer="ITW", points=[rec("volume", "volume")])
            heat = meter(secondary="51000003", points=[rec("energy", "energy"),
                                                       rec("energy_s2", "energy", storage=2)])
            water_a, water_b, heater = sim.at(0)
            for _ in range(3):  # interleaved polls: each meter keeps its own FCB sequence
                litres = int(water_a.litres(clock.now)) / 1000
                assert by_name(await drv.poll(a))["volume"].value == pytest.approx(litres)
                litres = int(water_b.litres(clock.now)) / 1000
                assert by_name(await drv.poll(b))["volume"].value == pytest.approx(litres)
                values = by_name(await drv.poll(heat))
                assert values["energy"].value == int(heater.energy_wh(clock.now)) * 3600
                assert values["energy_s2"].quality is Quality.GOOD  # the second telegram came
                clock.now += 60
        assert drv.stats.garbage >= 3  # the garbled answers at address 0 were counted
    finally:
        await asyncio.sleep(0.05)
        await sim.stop()

