"""What the driver does with a framed telegram: repeats, meter clocks, unknown meters, wrong keys,
counters; the watcher's ok/down; and a bounded fuzz of the whole receive path."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.sdk.models import DeviceState, PointValue, Quality
from agent.sim.wmbus_encoder import stripped
from agent.runtime.watcher import DeviceWatcher
from drivers.mbus.sim_meters import _type_f
from drivers.wmbus import amber, imst
from drivers.wmbus.config import WMBusBusConfig, WMBusDeviceConfig
from drivers.wmbus.driver import WMBusDriver
from drivers.wmbus.keys import KeyStore
from drivers.wmbus.radio import Radio

KEY = bytes(range(16))
EXAMPLES = int(os.environ.get("BATIGATE_FUZZ_EXAMPLES", "300"))  # longer budgets: set it
RECORDS = b"\x04\x13\x39\x30\x00\x00\x02\x3b\x06\x00"  # 12.345 m3, 6 l/h


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def driver_with(tmp_path: Path, clock: Clock, keys: dict[str, bytes] | None = None,
                receiver: str = "im871a") -> WMBusDriver:
    path = None
    if keys is not None:
        store = KeyStore()
        for ident, key in keys.items():
            store.add(ident, key)
        path = store.save(tmp_path / "keys")
    bus = WMBusBusConfig(id="radio", driver="wmbus", receiver=receiver,
                         port="socket://127.0.0.1:1", keys=path, repeat_window="60s")
    return WMBusDriver(bus, clock=clock.time, monotonic=clock.monotonic)


def listen_to(driver: WMBusDriver, ident: str, **device: Any) -> list[tuple[list[PointValue], float]]:
    heard: list[tuple[list[PointValue], float]] = []
    config = WMBusDeviceConfig(id=f"m-{ident}", bus="radio", address=ident, **device)
    driver.attach(config, lambda values, ts: heard.append((list(values), ts)))
    return heard


def test_values_repeats_and_counters(tmp_path: Path) -> None:
    clock = Clock()
    driver = driver_with(tmp_path, clock, {"12345678": KEY})
    heard = listen_to(driver, "12345678")
    frame = stripped("12345678", "SAP", 0x15, 0x07, 7, RECORDS, key=KEY)
    driver.reception.receive(Radio(frame, -71.5))
    driver.reception.receive(Radio(frame, -77.0))  # the same telegram, through a repeater
    clock.now += 61  # past the repeat window: a meter that sends identical bytes is heard again
    driver.reception.receive(Radio(frame, -70.0))
    # The repeat brought no values but said the meter is there (liveness); the late copy counts.
    assert [len(v) for v, _ in heard] == [3, 0, 3]
    values = {v.name: v for v in heard[0][0]}
    assert values["volume"].value == 12.345 and values["volume"].unit == "m3"
    assert values["rssi"] == PointValue("rssi", -71.5, unit="dBm")
    extra = driver.stats.extra
    assert (extra["telegrams"], extra["duplicates"], extra["accepted"]) == (3, 1, 2)


def test_unknown_meter_missing_and_wrong_key(tmp_path: Path) -> None:
    clock = Clock()
    driver = driver_with(tmp_path, clock, {"12345678": bytes(16)})  # wrong key
    heard = listen_to(driver, "12345678", manufacturer="SAP",
                      points=[{"name": "volume", "record": {"quantity": "volume"}}])
    receive = driver.reception.receive
    receive(Radio(stripped("12345678", "SAP", 0x15, 0x07, 1, RECORDS, key=KEY), -60))
    receive(Radio(stripped("87654321", "KAM", 0x1B, 0x16, 1, RECORDS, key=KEY), -80))  # no key
    receive(Radio(stripped("11112222", "SAP", 0x15, 0x07, 1, RECORDS), -80))  # clear, unknown
    receive(Radio(stripped("12345678", "KAM", 0x15, 0x07, 2, RECORDS), -60))  # other maker
    assert heard == [([PointValue("volume", None, Quality.BAD)], clock.now)]
    extra = driver.stats.extra
    assert extra["undecryptable"] == 2 and extra["unknown_meters"] == 3
    table = {(h.id, h.manufacturer): h for h in driver.reception.table()}
    assert table[("12345678", "SAP")].key == "wrong"
    assert table[("12345678", "SAP")].configured == "m-12345678"
    assert table[("87654321", "KAM")].key == "no" and table[("87654321", "KAM")].encrypted
    assert table[("11112222", "SAP")].key == "-" and not table[("11112222", "SAP")].encrypted
    assert table[("11112222", "SAP")].medium == "water"


def test_the_meter_s_own_time(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = 1_800_000_030.0  # 30 s into a minute
    driver = driver_with(tmp_path, clock)
    heard = listen_to(driver, "12345678")
    for access, (minutes_ago, _) in enumerate(((0, "now"), (10, "stored"), (-5, "ahead"),
                                               (3 * 1440, "stale"))):
        meter_time = _type_f(clock.now - 30 - minutes_ago * 60)  # type F: whole minutes (UTC)
        frame = stripped("12345678", "SAP", 0x15, 0x07, access, RECORDS + b"\x04\x6d" + meter_time)
        driver.reception.receive(Radio(frame, None))
    # "now" to the minute -> the reception time; 10 min old -> the meter's; the clock 5 min ahead
    # or 3 days behind -> not used, counted.
    assert [ts for _, ts in heard] == [clock.now, clock.now - 30 - 600, clock.now, clock.now]
    assert driver.stats.extra["meter_clock_ignored"] == 2


async def test_the_watcher_says_down_after_the_silence_and_ok_when_heard(tmp_path: Path) -> None:
    driver = driver_with(tmp_path, Clock())
    from agent.sdk.clock import SystemClock  # noqa: PLC0415

    device = WMBusDeviceConfig(id="m", bus="radio", address="12345678", interval="100ms",
                               silence_factor=2)
    states: list[tuple[DeviceState, str | None]] = []
    values: list[float] = []
    watcher = DeviceWatcher(device, driver, clock=SystemClock(),
                            on_values=lambda d, v, ts: values.append(ts),
                            on_state=lambda d, s, why: states.append((s, why)))
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.3)
    assert states == [(DeviceState.DOWN, "not heard for 0.2s")]
    frame = stripped("12345678", "SAP", 0x15, 0x07, 1, RECORDS)
    driver.reception.receive(Radio(frame, None))  # through the attach() of run()
    assert states[-1] == (DeviceState.OK, None) and len(values) == 1
    assert (await watcher.read_now())[0].name == "volume"
    watcher.heard([], 0.0)  # a repeat: heard, no new values, nothing published
    assert len(values) == 1 and (await watcher.read_now())[0].name == "volume"
    await asyncio.sleep(0.3)
    assert states[-1][0] is DeviceState.DOWN and watcher.stats.failures == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert driver.reception.listeners == {}  # detached when the watcher stops


# -- fuzz: any bytes from a stick end as a counted outcome, never an exception -------------------

def _feed(driver: WMBusDriver, chunks: list[bytes]) -> None:
    parser = driver.stick.parser()
    for chunk in chunks:
        for item in parser.feed(chunk):
            driver._dispatch(item)  # the receive path of _session, without the socket


def _counted(driver: WMBusDriver) -> int:
    extra = driver.stats.extra
    return (driver.stats.garbage + extra["telegrams"])


VALID = stripped("12345678", "SAP", 0x15, 0x07, 1, RECORDS, key=KEY)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(max_size=300), max_size=8),
       receiver=st.sampled_from(["im871a", "amb8465", "hex"]))
def test_fuzz_any_bytes_from_a_stick(tmp_path: Path, chunks: list[bytes], receiver: str) -> None:
    driver = driver_with(tmp_path, Clock(), receiver=receiver)
    listen_to(driver, "12345678")
    _feed(driver, chunks)
    total = sum(len(c) for c in chunks)
    assert _counted(driver) <= total + 1 and driver.stats.extra["accepted"] <= total


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), max_size=6),
       cut=st.integers(1, len(VALID)), length=st.integers(0, 255),
       receiver=st.sampled_from(["im871a", "amb8465"]))
def test_fuzz_damaged_telegrams_in_well_framed_messages(tmp_path: Path, flips: list[Any],
                                                        cut: int, length: int,
                                                        receiver: str) -> None:
    """A stick that frames correctly what the air damaged: the decoder sees it all."""
    frame = bytearray(VALID[:cut])
    for at, mask in flips:
        if at < len(frame):
            frame[at] ^= mask
    if frame:
        frame[0] = length
    body = bytes(frame[1:])
    message = (imst.encode(imst.RADIOLINK, imst.WMBUSMSG_IND, body, rssi=0x40)
               if receiver == "im871a" else amber.telegram(body, 0x40))
    driver = driver_with(tmp_path, Clock(), {"12345678": KEY}, receiver=receiver)
    listen_to(driver, "12345678")
    _feed(driver, [message])
    extra = driver.stats.extra
    outcomes = (extra["accepted"] + extra["bad_crc"] + extra["malformed"] + extra["duplicates"]
                + extra["undecryptable"] + extra["unknown_meters"])
    assert extra["telegrams"] == 0 or outcomes >= 1  # every telegram ends somewhere counted
    assert driver.stats.garbage + extra["telegrams"] >= 1
