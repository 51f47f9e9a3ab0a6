"""The M-Bus driver against the slave simulator over a real TCP socket.

The simulator is our own EN 13757-2 slave bus; a few test meters subclass its meters to
misbehave in one precise way (a garbled first answer, an application error), and a recording
bus (helpers.py) keeps every frame the master sent so the tests can check the FCB on the wire.
The configuration is tested in test_config.py, the scan in test_scan.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest

from agent.sdk.errors import DeviceUnavailable, PointNotWritable
from agent.sdk.models import Quality
from drivers.mbus import frames
from drivers.mbus.config import MBusPointConfig
from drivers.mbus.driver import MBusDriver
from drivers.mbus.link import MBusLink, SerialTransport
from drivers.mbus.simulator import HeatMeter, MBusSimulator, WaterMeter, default_meters
from tests.clocks import FakeClock
from tests.drivers.mbus.helpers import RecordingBus, bus_config, by_name, meter, rec

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc).timestamp()


class GarbledOnce(WaterMeter):
    """Garbles its first RSP_UD only, as a burst of noise on the line would."""

    def respond_ud2(self, fcb: bool) -> bytes:
        answer = super().respond_ud2(fcb)
        if not getattr(self, "_spoiled", False):
            self._spoiled = True
            return answer[:-2] + bytes(((answer[-2] + 1) & 0xFF, frames.STOP))
        return answer


class Busy(WaterMeter):
    """Answers every REQ_UD2 with an application error (CI 0x70, code 8: too busy)."""

    def respond_ud2(self, fcb: bool) -> bytes:
        return frames.rsp_ud(self.primary, 0x70, b"\x08")


@pytest.fixture
async def driver(sim: RecordingBus) -> AsyncIterator[MBusDriver]:
    async with MBusDriver(bus_config(sim)) as drv:
        yield drv


# ------------------------------------------------------------------------------- polling


async def test_primary_poll_values_in_senml_units(driver: MBusDriver, sim: RecordingBus,
                                                  clock: FakeClock) -> None:
    clock.now += 86400  # one day of consumption since the meters were installed
    water = sim.meters[1]
    assert isinstance(water, WaterMeter)
    values = by_name(await driver.poll(meter(address=1, points=[
        rec("volume", "volume"), rec("flow", "volume_flow"), rec("due", "volume", storage=1),
        rec("when", "date_time"), rec("absent", "energy")])))
    assert values["volume"].value == pytest.approx(int(water.litres(clock.now)) / 1000)
    assert values["volume"].value > 152.34  # the base index plus a day of use
    assert values["flow"].value == pytest.approx(round(water.rate_lph(clock.now)) / 3.6e6)
    assert values["due"].quality is Quality.GOOD
    assert values["when"].value == "2026-01-16T09:30:00"
    assert values["absent"].quality is Quality.BAD and values["absent"].value is None

    heat = sim.meters[10]
    assert isinstance(heat, HeatMeter)
    heat_values = by_name(await driver.poll(meter(address=10, points=[
        rec("energy", "energy"), rec("power", "power"), rec("t_flow", "flow_temperature")])))
    assert heat_values["energy"].value == int(heat.energy_wh(clock.now)) * 3600  # Wh -> J
    assert isinstance(heat_values["energy"].value, int)
    assert heat_values["power"].value == round(heat.power_w(clock.now))
    assert heat_values["t_flow"].value == pytest.approx(round(heat.temperatures(clock.now)[0]
                                                              * 100) / 100)
    assert driver.stats.requests == 4 and driver.stats.timeouts == driver.stats.garbage == 0


async def test_points_by_index_and_every_record_without_points(driver: MBusDriver) -> None:
    by_index = by_name(await driver.poll(meter(address=2, points=[
        {"name": "vol", "index": 1, "unit": "m3"}, {"name": "wrong_unit", "index": 1,
                                                   "unit": "J"},
        {"name": "too_far", "index": 99}])))
    assert by_index["vol"].value == pytest.approx(98.77)
    # The record at that index is no longer what the config says: never publish it as J.
    assert by_index["wrong_unit"].quality is Quality.BAD
    assert by_index["too_far"].quality is Quality.BAD
    auto = by_name(await driver.poll(meter(address=12)))
    assert {"fabrication_no", "energy", "volume", "power", "volume_flow", "flow_temperature",
            "return_temperature", "temperature_difference", "date_time", "energy_s1", "date_s1",
            "energy_s12", "date_s12"} <= set(auto)
    assert "manufacturer_data" not in auto  # the bare 0x1F "more follows" marker
    assert all(v.quality is Quality.GOOD for v in auto.values())


async def test_secondary_addressing(driver: MBusDriver, sim: RecordingBus,
                                    clock: FakeClock) -> None:
    heat = sim.meters[11]
    assert isinstance(heat, HeatMeter)
    device = meter(secondary="31000011", manufacturer="KAM", points=[rec("energy", "energy")])
    first = by_name(await driver.poll(device))
    assert first["energy"].value == int(heat.energy_wh(clock.now)) * 3600
    # first poll: select, SND_NKE to 0xFD (which deselects), select again, REQ_UD2 to 0xFD
    select = frames.select_secondary("31000011", "KAM")
    assert sim.heard == [select, frames.snd_nke(0xFD), select, frames.req_ud2(0xFD, True)]
    sim.heard.clear()
    await driver.poll(meter(address=1))  # another meter in between
    clock.now += 3600
    second = by_name(await driver.poll(device))
    assert second["energy"].value == int(heat.energy_wh(clock.now)) * 3600
    assert second["energy"].value > first["energy"].value
    assert sim.heard[-2:] == [select, frames.req_ud2(0xFD, False)]  # no reset, FCB toggled
    with pytest.raises(DeviceUnavailable, match="select: no answer"):
        await driver.poll(meter(secondary="99999999", timeout="50ms"))
    with pytest.raises(DeviceUnavailable, match="select"):
        await driver.poll(meter(secondary="31000011", manufacturer="SEN", timeout="50ms"))


async def test_multi_telegram_read_out_follows_the_fcb(driver: MBusDriver, sim: RecordingBus,
                                                       clock: FakeClock) -> None:
    heat = sim.meters[12]
    assert isinstance(heat, HeatMeter) and heat.telegram_count() == 2
    clock.now = datetime(2026, 3, 20, 12, tzinfo=timezone.utc).timestamp()
    device = meter(address=12, points=[rec("energy", "energy"),
                                       rec("jan", "energy", storage=2),
                                       rec("dec", "energy", storage=3),
                                       rec("jan_date", "date", storage=2)])
    for _ in range(3):  # the read-out restarts at telegram 1 on every poll
        values = by_name(await driver.poll(device))
        jan = datetime(2026, 2, 1, tzinfo=timezone.utc).timestamp()
        assert values["jan"].value == int(heat.energy_wh(jan)) * 3600
        assert values["jan_date"].value == "2026-02-01"
        assert values["energy"].value == int(heat.energy_wh(clock.now)) * 3600
        assert values["energy"].value > values["jan"].value > values["dec"].value
    # SND_NKE once, then the FCB alternates on every exchange, across polls too
    assert sim.heard[0] == frames.snd_nke(12)
    assert sim.req_ud2_c_fields(12) == [0x7B, 0x5B] * 3
    assert driver.stats.requests == 7


async def test_max_telegrams_cuts_the_read_out_and_resets_next_time(sim: RecordingBus) -> None:
    async with MBusDriver(bus_config(sim, max_telegrams=1)) as driver:
        device = meter(address=12, points=[rec("energy", "energy"),
                                           rec("jan", "energy", storage=2)])
        for _ in range(2):
            values = by_name(await driver.poll(device))
            assert values["energy"].quality is Quality.GOOD
            assert values["jan"].quality is Quality.BAD  # in telegram 2, never asked for
    # the meter is left mid-sequence, so every poll starts with a link reset
    assert [f for f in sim.heard if f[0] == frames.START_SHORT] == [
        frames.snd_nke(12), frames.req_ud2(12, True)] * 2


async def test_a_silent_meter_is_unavailable_within_its_retries(driver: MBusDriver,
                                                                sim: RecordingBus) -> None:
    sim.set_silent(3, True)
    device = meter(address=3, timeout="150ms")
    started = time.monotonic()
    with pytest.raises(DeviceUnavailable, match=r"SND_NKE: no answer within 0.15s \(3 tries\)"):
        await driver.poll(device)
    elapsed = time.monotonic() - started
    wire = 3 * 5 * 11 / 2400  # each SND_NKE's own time on a 2400 baud line
    assert 3 * 0.15 + wire <= elapsed < 3 * 0.15 + wire + 0.3
    assert driver.stats.timeouts == 3 and driver.stats.requests == 3
    # the others keep answering, and the meter is back as soon as it answers
    assert (await driver.poll(meter(address=1)))
    sim.set_silent(3, False)
    assert by_name(await driver.poll(device))["volume"].value == pytest.approx(41.005)


async def test_garbage_is_counted_and_survived(driver: MBusDriver, sim: RecordingBus) -> None:
    device = meter(address=4, points=[rec("volume", "volume")])
    await driver.poll(device)
    sim.inject_garbage(4, True)
    with pytest.raises(DeviceUnavailable, match="garbled bytes"):
        await driver.poll(device)
    assert driver.stats.garbage == 3 and driver.stats.timeouts == 0
    sim.inject_garbage(4, False)
    assert (await driver.poll(device))[0].quality is Quality.GOOD
    assert sim.heard[-2:] == [frames.snd_nke(4), frames.req_ud2(4, True)]  # reset after failure


async def test_a_poll_cut_short_resets_the_link_next_time(driver: MBusDriver,
                                                          sim: RecordingBus) -> None:
    device = meter(address=2)
    await driver.poll(device)
    sim.response_delay = 0.1
    with pytest.raises(TimeoutError):  # the poller's ceiling, cancelling mid-exchange
        async with asyncio.timeout(0.05):
            await driver.poll(device)
    sim.response_delay = 0.0
    await asyncio.sleep(0.1)  # the late answer arrives; the next request must not take it
    sim.heard.clear()
    assert await driver.poll(device)
    assert sim.heard == [frames.snd_nke(2), frames.req_ud2(2, True)]
    assert driver.stats.extra["stale_bytes"] > 0


async def test_a_repeat_keeps_the_fcb_and_gets_the_same_telegram(clock: FakeClock) -> None:
    flaky = GarbledOnce(7, "21000007", "SAP", 0x15, 0x07, clock, base_litres=5_000)
    sim = RecordingBus([flaky], clock)
    await sim.start()
    try:
        async with MBusDriver(bus_config(sim)) as driver:
            values = await driver.poll(meter(address=7, points=[rec("volume", "volume")]))
            assert values[0].value == pytest.approx(5.0)
            assert driver.stats.garbage == 1
            assert sim.req_ud2_c_fields(7) == [0x7B, 0x7B]  # the repeat: same FCB
            assert flaky.access_number == 1  # ... so the meter sent the same telegram again
        await asyncio.sleep(0.05)
    finally:
        await sim.stop()


async def test_an_application_error_makes_points_bad_not_the_device_down(
        clock: FakeClock) -> None:
    sim = RecordingBus([Busy(8, "21000008", "SAP", 0x15, 0x07, clock)], clock)
    await sim.start()
    try:
        async with MBusDriver(bus_config(sim)) as driver:
            values = await driver.poll(meter(address=8, points=[rec("volume", "volume")]))
            assert values[0].quality is Quality.BAD
            assert driver.stats.exceptions == 1 and driver.stats.garbage == 0
            assert await driver.poll(meter(address=8)) == []
        await asyncio.sleep(0.05)
    finally:
        await sim.stop()


async def test_the_link_comes_back_after_the_converter_restarts(clock: FakeClock) -> None:
    sim = MBusSimulator(default_meters(clock), clock)
    port = await sim.start()
    async with MBusDriver(bus_config(sim)) as driver:
        device = meter(address=1)
        assert await driver.poll(device)
        await sim.stop()
        with pytest.raises(DeviceUnavailable, match="lost|cannot open"):
            await driver.poll(device)
        with pytest.raises(DeviceUnavailable, match="cannot open"):
            await driver.poll(device)
        await sim.start(port=port)
        assert await driver.poll(device)
        with pytest.raises(PointNotWritable):
            await driver.write(device, MBusPointConfig.model_validate(rec("v", "volume")), 1)
    await asyncio.sleep(0.05)
    await sim.stop()


async def test_pyserial_transport_through_to_thread(sim: RecordingBus) -> None:
    """The code path of a real serial port (pyserial in to_thread), over pyserial's socket://."""
    bus = bus_config(sim)
    driver = MBusDriver(bus)
    driver.link = MBusLink(bus, driver.stats, SerialTransport(
        f"socket://127.0.0.1:{sim.port}", baudrate=2400, parity="E", stopbits=1, bytesize=8))
    async with driver:
        values = by_name(await driver.poll(meter(address=12, points=[
            rec("energy", "energy"), rec("dec", "energy", storage=3)])))
        assert values["energy"].quality is values["dec"].quality is Quality.GOOD
        sim.set_silent(1, True)
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable):
            await driver.poll(meter(address=1, timeout="100ms"))
        assert time.monotonic() - started < 3 * (0.1 + SerialTransport.SLICE + 0.03) + 0.2
    assert not driver.link.transport.is_open

def test_an_error_code_in_a_numeric_record_reads_bad() -> None:
    # Issue #15: the A-F digits now keep the record's unit, so the unit check alone would pass.
    from drivers.mbus import mapping
    from drivers.mbus.codec import Record

    record = Record("DDEBBD", "m3/s", "volume_flow")
    assert mapping.value_of("flow", record, "m3/s").quality is Quality.BAD
    (auto,) = mapping.auto([record])
    assert (auto.name, auto.value, auto.quality) == ("volume_flow", None, Quality.BAD)
    good = Record(0.25, "m3/s", "volume_flow")
    assert mapping.value_of("flow", good, "m3/s").value == 0.25


class HourlyVolume(WaterMeter):
    """Adds a "volume per hour" record (VIF 0x13 litres + VIFE 0x22 per hour): 3600 l/h."""

    def records(self, index: int, now: float) -> bytes:
        return super().records(index, now) + b"\x04\x93\x22" + (3600).to_bytes(4, "little")


async def test_a_per_hour_record_reads_in_m3_per_s(clock: FakeClock) -> None:
    # Issue #15: the VIFE "per hour" keeps a unit; the point's unit is filled in from it.
    sim = RecordingBus([HourlyVolume(3, "41000003", "SAP", 0x15, 0x07, clock)], clock)
    await sim.start()
    try:
        point = MBusPointConfig.model_validate(rec("avg_flow", "volume_per_hour"))
        assert point.unit == "m3/s"
        async with MBusDriver(bus_config(sim)) as drv:
            values = by_name(await drv.poll(meter(address=3, points=[
                rec("avg_flow", "volume_per_hour")])))
            assert values["avg_flow"].value == pytest.approx(0.001)  # 3.6 m3/h
            assert values["avg_flow"].quality is Quality.GOOD
            auto = by_name(await drv.poll(meter(address=3)))
            assert (auto["volume_per_hour"].value, auto["volume_per_hour"].unit) == (
                pytest.approx(0.001), "m3/s")
    finally:
        await asyncio.sleep(0.05)
        await sim.stop()
