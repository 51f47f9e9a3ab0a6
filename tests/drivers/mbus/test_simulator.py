"""The M-Bus slave simulator, driven over a real TCP socket with our own frames and codec."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
import serial

from drivers.mbus import frames
from drivers.mbus.codec import MBusDecodeError, Record, Telegram, decode_frame
from drivers.mbus.simulator import (
    HEAT_PROFILE,
    HeatMeter,
    MBusSimulator,
    WaterMeter,
    collide,
    default_meters,
    serve_forever,
)
from tests.clocks import FakeClock

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc).timestamp()
SILENCE = 0.15  # the simulator answers at once; this is only how long we wait for nothing


@dataclass
class Exchange:
    frame: bytes | None  # the first valid frame heard, if any
    garbage: bytes  # bytes that were heard but formed no valid frame


class Master:
    """A minimal master over an asyncio stream: send a frame, collect what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, frame: bytes, wait: float = SILENCE) -> Exchange:
        self.writer.write(frame)
        await self.writer.drain()
        buf = bytearray()
        garbage = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            found = frames.extract_frame(buf)
            garbage += buf[: found.garbage]
            del buf[: found.consumed]
            if found.frame is not None:
                return Exchange(found.frame, bytes(garbage))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Exchange(None, bytes(garbage + buf))
            try:
                chunk = await asyncio.wait_for(self.reader.read(512), remaining)
            except TimeoutError:
                return Exchange(None, bytes(garbage + buf))
            if not chunk:
                return Exchange(None, bytes(garbage + buf))
            buf += chunk

    async def read_data(self, address: int, fcb: bool = False) -> Telegram:
        reply = await self.send(frames.req_ud2(address, fcb))
        assert reply.frame is not None, f"no answer from {address}"
        return decode_frame(reply.frame)

    async def ack(self, frame: bytes) -> bool:
        reply = await self.send(frame)
        return reply.frame == bytes((frames.ACK,))


@pytest.fixture
async def master(sim: MBusSimulator) -> AsyncIterator[Master]:
    assert sim.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    yield Master(reader, writer)
    writer.close()


def _one(t: Telegram, quantity: str, storage: int = 0) -> Record:
    found = [r for r in t.records if r.quantity == quantity and r.storage == storage]
    assert len(found) == 1, (quantity, storage, t.records)
    return found[0]


# ----------------------------------------------------------------- primary address


async def test_snd_nke_is_acknowledged(master: Master) -> None:
    assert await master.ack(frames.snd_nke(1))


async def test_req_ud2_returns_the_water_meter(master: Master, sim: MBusSimulator) -> None:
    t = await master.read_data(1)
    assert (t.id, t.manufacturer, t.version, t.medium) == ("21000001", "SAP", 0x15, "water")
    assert t.address == 1 and t.ci == 0x72
    volume = _one(t, "volume")
    assert volume.unit == "m3" and volume.value == pytest.approx(152.340)
    assert _one(t, "fabrication_no").value == 21000001
    assert _one(t, "date_time").value == "2026-01-15T12:00:00"
    assert _one(t, "date", storage=1).value == "2026-01-01"
    assert _one(t, "error_flags").value == 0


async def test_volume_follows_the_injected_clock(master: Master, clock: FakeClock) -> None:
    before = _one(await master.read_data(1), "volume").value
    clock.now += 7 * 86400
    after = _one(await master.read_data(1, fcb=True), "volume").value
    assert isinstance(before, float) and isinstance(after, float)
    # 320 litres a day, whole days: the profile integrates to exactly the daily volume.
    assert after - before == pytest.approx(7 * 0.320, abs=0.002)


async def test_night_flow_is_zero_except_for_the_leaking_meter(
    master: Master, clock: FakeClock
) -> None:
    clock.now = datetime(2026, 1, 16, 3, 0, tzinfo=timezone.utc).timestamp()
    assert _one(await master.read_data(1), "volume_flow").value == 0
    leak = _one(await master.read_data(4), "volume_flow")
    assert leak.unit == "m3/s" and leak.value == pytest.approx(6 / 1000 / 3600)
    clock.now += 3600  # still night: the leaking meter's index keeps climbing
    v0 = _one(await master.read_data(4, fcb=True), "volume").value
    clock.now += 3600
    v1 = _one(await master.read_data(4), "volume").value
    assert isinstance(v0, float) and isinstance(v1, float)
    assert v1 - v0 == pytest.approx(0.006, abs=0.0011)


async def test_heat_meter_values_are_consistent(master: Master, clock: FakeClock) -> None:
    clock.now = datetime(2026, 1, 16, 7, 0, tzinfo=timezone.utc).timestamp()  # load 1.0
    t = await master.read_data(10)
    assert t.medium == "heat_outlet" and t.manufacturer == "KAM"
    power = _one(t, "power")
    assert power.unit == "W" and power.value == pytest.approx(8000 * HEAT_PROFILE[7])
    flow_t, return_t = _one(t, "flow_temperature"), _one(t, "return_temperature")
    delta = _one(t, "temperature_difference")
    assert flow_t.unit == "Cel" and delta.unit == "K"
    assert flow_t.value == pytest.approx(70.0) and return_t.value == pytest.approx(50.0)
    assert delta.value == pytest.approx(20.0)
    flow = _one(t, "volume_flow")
    assert isinstance(flow.value, float)
    # Q = 1.163 Wh/(l.K) * flow * dT: the flow is what the power needs.
    assert flow.value * 3600 * 1000 * 1.163 * 20 == pytest.approx(8000, rel=0.01)
    e0 = _one(t, "energy")
    clock.now += 1800  # half an hour at constant load
    e1 = _one(await master.read_data(10, fcb=True), "energy")
    assert e0.unit == "J" and isinstance(e0.value, int) and isinstance(e1.value, int)
    assert e1.value - e0.value == pytest.approx(8000 * 1800, abs=3600)


# --------------------------------------------------------------- secondary address


async def test_select_by_secondary_address(master: Master) -> None:
    assert await master.ack(frames.select_secondary("31000011", "KAM", 0x34, 0x04))
    t = await master.read_data(frames.ADDR_NETWORK_LAYER)
    assert t.id == "31000011" and t.address == 11


async def test_select_with_wildcards_matching_one_meter(master: Master) -> None:
    assert await master.ack(frames.select_secondary("FFFFFF15"))
    assert (await master.read_data(frames.ADDR_NETWORK_LAYER)).id == "21000015"
    assert await master.ack(frames.select_secondary("FFFFFFFF", "ITW", medium=0x16, version=0x20))
    # Two ITW cold-water meters are selected now: their answers collide on the bus.
    reply = await master.send(frames.req_ud2(frames.ADDR_NETWORK_LAYER))
    assert reply.frame is None and reply.garbage
    with pytest.raises(MBusDecodeError):
        decode_frame(reply.garbage)


async def test_select_mismatch_deselects_everyone(master: Master) -> None:
    assert await master.ack(frames.select_secondary("21000002"))
    reply = await master.send(frames.select_secondary("99999999"))
    assert reply.frame is None and not reply.garbage
    assert (await master.send(frames.req_ud2(frames.ADDR_NETWORK_LAYER))).frame is None


async def test_snd_nke_to_fd_deselects(master: Master) -> None:
    assert await master.ack(frames.select_secondary("21000003", "SAP"))
    assert await master.ack(frames.snd_nke(frames.ADDR_NETWORK_LAYER))
    assert (await master.send(frames.req_ud2(frames.ADDR_NETWORK_LAYER))).frame is None


async def test_manufacturer_and_medium_filters(master: Master, sim: MBusSimulator) -> None:
    assert not (await master.send(frames.select_secondary("FFFFFFFF", "ABC"))).frame
    assert not [m for m in sim.meters.values() if m.selected]
    assert await master.ack(frames.select_secondary("2100000F", medium=0x06))
    assert [m.primary for m in sim.meters.values() if m.selected] == [3]


# ----------------------------------------------------------------- FCB, multi-telegram


async def test_fcb_walks_the_multi_telegram_meter(master: Master, clock: FakeClock) -> None:
    assert await master.ack(frames.snd_nke(12))
    first = await master.read_data(12, fcb=True)
    assert first.more_records_follow and first.records[-1].quantity == "manufacturer_data"
    second = await master.read_data(12, fcb=False)
    assert not second.more_records_follow
    energies = [r for r in second.records if r.quantity == "energy"]
    dates = [r for r in second.records if r.quantity == "date"]
    assert [r.storage for r in energies] == list(range(1, 13))
    assert dates[0].value == "2026-01-01" and dates[11].value == "2025-02-01"
    assert second.access_number == first.access_number + 1
    # Same FCB again: the master missed the answer, the meter repeats the same telegram.
    again = await master.read_data(12, fcb=False)
    assert again.access_number == second.access_number
    assert [r.storage for r in again.records if r.quantity == "energy"] == list(range(1, 13))
    # Toggle again: back to the first telegram.
    assert (await master.read_data(12, fcb=True)).more_records_follow


async def test_history_is_the_energy_at_each_month_start(clock: FakeClock) -> None:
    meter = HeatMeter(7, "31000007", "KAM", 1, 4, clock, base_wh=1_000, history_months=3)
    clock.now += 90 * 86400
    t = decode_frame(meter.respond_ud2(True))
    t2 = decode_frame(meter.respond_ud2(False))
    assert t.more_records_follow
    stored = {r.storage: r.value for r in t2.records if r.quantity == "energy"}
    month_start = datetime(2026, 4, 1, tzinfo=timezone.utc).timestamp()
    assert stored[1] == int(meter.energy_wh(month_start)) * 3600


# ------------------------------------------------------------------- fault injection


async def test_silent_meter_does_not_answer(master: Master, sim: MBusSimulator) -> None:
    sim.set_silent(2, True)
    assert (await master.send(frames.req_ud2(2))).frame is None
    assert (await master.read_data(1)).id == "21000001"  # the others keep answering
    sim.set_silent(2, False)
    assert (await master.read_data(2)).id == "21000002"


async def test_garbage_answer_fails_the_checksum(master: Master, sim: MBusSimulator) -> None:
    sim.inject_garbage(3, True)
    reply = await master.send(frames.req_ud2(3))
    assert reply.frame is None and len(reply.garbage) > 20
    with pytest.raises(MBusDecodeError, match="checksum"):
        decode_frame(reply.garbage)
    sim.inject_garbage(3, False)
    assert (await master.read_data(3)).medium == "warm_water"


async def test_noise_before_a_request_is_ignored(master: Master) -> None:
    t = await master.send(b"\x00\x68\x99\x13" + frames.req_ud2(5))
    assert t.frame is not None and decode_frame(t.frame).id == "21000015"


def test_collisions_combine_like_the_bus() -> None:
    assert collide([b"\xe5", b"\xe5"]) == b"\xe5"
    assert collide([b"\x0f\xff", b"\xf0"]) == b"\x00\xff"


def test_two_meters_with_one_secondary_address_are_refused(clock: FakeClock) -> None:
    a = WaterMeter(1, "00000001", "SAP", 1, 7, clock)
    b = WaterMeter(2, "00000001", "SAP", 1, 7, clock)
    with pytest.raises(ValueError, match="same secondary address"):
        MBusSimulator([a, b], clock)


def factory_bus(clock: FakeClock) -> list[WaterMeter | HeatMeter]:
    """Three meters left at factory primary address 0, and one configured meter at 7."""
    return [
        WaterMeter(0, "41000001", "SAP", 0x15, 0x07, clock, base_litres=1000),
        WaterMeter(0, "41000002", "SAP", 0x15, 0x07, clock, base_litres=2000),
        HeatMeter(0, "51000003", "KAM", 0x34, 0x04, clock, base_wh=5_000_000),
        WaterMeter(7, "41000007", "ITW", 0x20, 0x16, clock, base_litres=7000),
    ]


async def test_meters_sharing_address_0_collide_until_selected(clock: FakeClock) -> None:
    sim = MBusSimulator(factory_bus(clock), clock)
    await sim.start()
    assert sim.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    master = Master(reader, writer)
    try:
        assert [m.ident for m in sim.at(0)] == ["41000001", "41000002", "51000003"]
        # Their E5s are identical, so SND_NKE to 0 looks fine ...
        assert await master.ack(frames.snd_nke(0))
        # ... but three telegrams at once are garbled: no valid frame, bytes heard.
        reply = await master.send(frames.req_ud2(0))
        assert reply.frame is None and len(reply.garbage) > 20
        # The way out: select one by its secondary address, read it at 0xFD.
        assert await master.ack(frames.select_secondary("41000002"))
        t = await master.read_data(frames.ADDR_NETWORK_LAYER)
        assert t.id == "41000002" and t.address == 0
        assert _one(t, "volume").value == pytest.approx(2.0)
        # Selecting another deselects the first: still one answer at 0xFD.
        assert await master.ack(frames.select_secondary("51000003", manufacturer="KAM"))
        assert (await master.read_data(frames.ADDR_NETWORK_LAYER)).id == "51000003"
        # The meter alone at its address is unaffected.
        assert (await master.read_data(7)).id == "41000007"
        # Fault injection reaches every meter at an address.
        sim.set_silent(0, True)
        assert (await master.send(frames.snd_nke(0))).frame is None
    finally:
        writer.close()
        await sim.stop()


async def test_a_repeat_is_the_buffered_telegram_byte_for_byte(
    master: Master, clock: FakeClock
) -> None:
    assert await master.ack(frames.snd_nke(4))
    first = await master.send(frames.req_ud2(4, fcb=True))
    clock.now += 3600  # the meter's values move on (meter 4 leaks: its volume always grows)
    again = await master.send(frames.req_ud2(4, fcb=True))
    assert first.frame is not None and again.frame == first.frame
    fresh = await master.send(frames.req_ud2(4, fcb=False))  # toggled: a new read-out
    assert fresh.frame is not None and fresh.frame != first.frame
    assert decode_frame(fresh.frame).access_number == decode_frame(first.frame).access_number + 1
    assert _one(decode_frame(fresh.frame), "volume").value > _one(
        decode_frame(first.frame), "volume").value


# --------------------------------------------------------- pyserial socket:// client


def _serial_read_data(port: int, address: int) -> bytes:
    """What a pyserial-based master does: blocking I/O, so the test runs it in a thread."""
    with serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=1.0) as line:
        line.write(frames.req_ud2(address))
        head = line.read(4)
        return head + line.read(head[1] + 2)


async def test_pyserial_socket_url(sim: MBusSimulator) -> None:
    assert sim.port is not None
    raw = await asyncio.to_thread(_serial_read_data, sim.port, 11)
    assert decode_frame(raw).id == "31000011"


async def test_serve_forever_until_cancelled(clock: FakeClock) -> None:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_forever(port=0, meters=default_meters(clock), clock=clock, ready=bound.set_result)
    )
    port = await asyncio.wait_for(bound, 2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await Master(reader, writer).ack(frames.snd_nke(10))
    writer.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
