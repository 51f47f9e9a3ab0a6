"""The receivers' framing: the iM871A HCI (a real frame), the Amber command frames, hex lines;
and each emulated stick driven by the real driver over a pty, a TCP socket and a command."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.sdk.models import PointValue
from agent.sim.radio_meters import RadioAir, default_radio_meters, keys_file
from agent.sim.radio_stick import EmulatedStick
from agent.sim.wmbus_encoder import format_a, stripped
from drivers.wmbus import amber, imst
from drivers.wmbus.config import WMBusBusConfig, WMBusDeviceConfig
from drivers.wmbus.driver import WMBusDriver
from drivers.wmbus.hexline import MAX_LINE, HexLineParser
from drivers.wmbus.radio import Answer, Garbage, Radio

# A WMBUSMSG_IND as an iM871A sent it (from the mbus-kit documentation of its stick module):
# A5, ctrl 0xC (CRC + RSSI) / endpoint 2, message 03, length 0x19, C field 44 ..., RSSI 0x56,
# CRC-16/X-25 60 EB.
REAL_HCI = bytes.fromhex("A5C20319442423850760144018A1514900135355B8531892DF2B27373456" "60EB")


def test_a_real_im871a_frame_gives_its_telegram_and_rssi() -> None:
    [item] = imst.HciParser().feed(REAL_HCI)
    assert isinstance(item, Radio)
    assert item.frame[0] == 0x19 and item.frame[1:3] == b"\x44\x24"  # L put back, then C
    assert len(item.frame) == 0x19 + 1
    assert item.rssi == pytest.approx(0x56 / 2 - 74)
    assert imst.crc16_x25(b"123456789") == 0x906E  # the CRC-16/X-25 check value


def test_hci_messages_in_any_chunks_and_junk_between() -> None:
    parser = imst.HciParser()
    stream = b"\x00\x13" + REAL_HCI + imst.encode(imst.DEVMGMT, imst.PING_RSP) + REAL_HCI
    items: list[Any] = []
    for i in range(0, len(stream), 3):
        items += parser.feed(stream[i:i + 3])
    kinds = [type(x).__name__ for x in items]
    assert kinds == ["Garbage", "Radio", "Answer", "Radio"]
    assert items[0].count == 2 and items[2].kind == imst.ANSWER_PING


def test_a_corrupted_hci_message_is_garbage_and_the_next_one_is_found() -> None:
    bad = bytearray(REAL_HCI)
    bad[10] ^= 0x01
    items = imst.HciParser().feed(bytes(bad) + REAL_HCI)
    assert isinstance(items[-1], Radio)
    assert sum(x.count for x in items if isinstance(x, Garbage)) == len(REAL_HCI)


def test_the_im871a_link_modes_and_commands() -> None:
    assert imst.link_mode(("t1",)) == 0x03 and imst.link_mode(("c1", "t1")) == 0x0A
    with pytest.raises(ValueError, match="not s1\\+t1"):
        imst.link_mode(("s1", "t1"))
    ping, set_config = imst.Im871a().setup(("c1", "t1"))
    assert ping[0][:4] == b"\xa5\x81\x01\x00"  # CRC attached, DEVMGMT, PING_REQ, no payload
    assert set_config[0][4:9] == bytes((0x00, 0x02, 0x0A, 0x10, 0x01))  # RAM, link mode, RSSI


def test_amber_frames() -> None:
    frame = stripped("12345678", "SAP", 0x15, 0x07, 1, b"\x04\x13\x01\x00\x00\x00")
    message = amber.telegram(frame[1:], 0xE4)  # RSSI register 0xE4: -14 - 74 = -88 dBm
    assert message[0] == 0xFF and message[1] == 0x03 and message[2] == len(frame)
    parser = amber.AmberParser()
    items = parser.feed(b"\x55" + message[:5]) + parser.feed(message[5:])
    assert isinstance(items[0], Garbage) and items[1] == Radio(frame, -88.0)
    assert parser.feed(amber.encode(0x84, b"\x00")) == [Answer(0x84, b"\x00")]
    bad = bytearray(message)
    bad[-1] ^= 0xFF
    assert all(isinstance(x, Garbage) for x in amber.AmberParser().feed(bytes(bad)))
    with pytest.raises(ValueError, match="no s1|not s1"):
        amber.link_mode(("s1",))


def test_hex_lines_rtl_wmbus_form_and_bounds() -> None:
    frame = format_a(stripped("12345678", "SAP", 0x15, 0x07, 1, b"\x04\x13\x01\x00\x00\x00"))
    parser = HexLineParser()
    items = parser.feed(frame.hex().encode() + b"\n# comment\n\nT1;1;1;2019-03-29 17:46:03.000;97;"
                        b"148;12345678;0x" + frame.hex().encode() + b"\nT1;0;0;x;1;2;3;0xAB\n"
                        b"zz\n")
    assert items[0] == items[1] == Radio(frame, None, crc_checked=False)
    assert [x.why for x in items[2:]] == ["the receiver marks this telegram's CRC as bad",
                                          "not a hex telegram"]
    long = parser.feed(b"A" * (MAX_LINE + 10)) + parser.feed(b"BB\n" + frame.hex().encode()
                                                              + b"\n")
    assert [type(x).__name__ for x in long] == ["Garbage", "Garbage", "Radio"]


# -- each receiver driven by the real driver ------------------------------------------------------

async def _listen(bus: WMBusBusConfig, meters: list[Any], emitters: list[Any],
                  want: int = 3) -> tuple[WMBusDriver, dict[str, list[PointValue]]]:
    driver = WMBusDriver(bus)
    heard: dict[str, list[PointValue]] = {}
    for meter in meters[:2]:
        device = WMBusDeviceConfig(id=meter.name, bus=bus.id, address=meter.source.ident)
        driver.attach(device, lambda values, ts, n=meter.name: values and heard.__setitem__(
            n, list(values)))  # a repeat says "heard" with no values
    air = RadioAir(meters, time.time, repeat=0, collision=0, seed=1)
    air.sticks.extend(emitters)
    tasks = [asyncio.create_task(air.run()), asyncio.create_task(driver.listen())]
    try:
        async with asyncio.timeout(10):
            while driver.stats.extra["accepted"] < want:
                await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return driver, heard


@pytest.mark.parametrize("kind", ["im871a", "amber"])
async def test_an_emulated_stick_on_a_pty_is_read_as_a_serial_device(tmp_path: Path,
                                                                      kind: str) -> None:
    meters = default_radio_meters(interval=0.2)
    stick = EmulatedStick(kind, seed=2)
    path = stick.open_pty()
    bus = WMBusBusConfig(id="radio", driver="wmbus", port=path, keys=keys_file(meters, tmp_path / "k"),
                         receiver="im871a" if kind == "im871a" else "amb8465")
    try:
        driver, heard = await _listen(bus, meters, [stick])
    finally:
        await stick.stop()
    assert driver.stats.extra["receiving"] == 0 and driver.stats.requests == 2  # probe + modes
    values = {v.name: v for v in heard["flat-101-water"]}
    assert values["volume"].unit == "m3" and values["rssi"].unit == "dBm"
    assert -64 < values["rssi"].value < -56  # the meter's -60 dBm +- 3, through the register


async def test_an_sdr_decoder_s_output_through_a_command(tmp_path: Path) -> None:
    meters = default_radio_meters()
    lines = tmp_path / "rtl_wmbus.out"
    now = time.time()
    frames = [format_a(m.telegram(now)).hex() for m in meters]
    lines.write_text("".join(f"T1;1;1;x;90;100;12345678;0x{frame}\n" * 2 for frame in frames))
    keys = keys_file(meters, tmp_path / "k")
    bus = WMBusBusConfig(id="radio", driver="wmbus", receiver="hex", keys=keys,
                         command=f"cat {lines}; sleep 30")
    driver, heard = await _listen(bus, meters, [], want=2)
    assert set(heard) == {"flat-101-water", "flat-102-water"}
    assert "rssi" not in {v.name for v in heard["flat-101-water"]}  # rtl_wmbus gives no dBm
    assert driver.stats.extra["duplicates"] >= 2  # every line twice


async def test_a_stick_of_the_wrong_kind_is_reported_and_retried(tmp_path: Path,
                                                                 caplog: Any) -> None:
    stick = EmulatedStick("amber")  # but the config says iM871A: it never answers the ping
    port = await stick.start_tcp()
    bus = WMBusBusConfig(id="radio", driver="wmbus", receiver="im871a",
                         port=f"socket://127.0.0.1:{port}", answer_timeout="300ms")
    driver = WMBusDriver(bus)
    events: list[dict[str, Any]] = []
    driver.events = events.append  # what the field wires to `evt`
    task = asyncio.create_task(driver.listen())
    try:
        async with asyncio.timeout(10):
            while driver.stats.timeouts < 2:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stick.stop()
    assert driver.stats.extra["reopens"] >= 2
    [down] = events  # once per outage, not once per retry
    assert down["type"] == "bus.down" and down["bus"] == "radio"
    assert "did not answer" in down["reason"]
    assert "did not answer a58101" in caplog.text and "wrong receiver type" in caplog.text
    assert sys.modules["drivers.wmbus.driver"]  # the driver module stays loaded and usable


def test_the_sample_config_validates(tmp_path: Path) -> None:
    import yaml  # noqa: PLC0415

    from agent.config import loader as config  # noqa: PLC0415

    doc = yaml.safe_load((Path(__file__).parents[3] / "drivers/wmbus/sample.yaml").read_text())
    doc.update({"gateway": {"id": "gw-1", "site": "s"}, "mqtt": {"host": "h", "tls": False}})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    loaded = config.load(path)
    assert [d.profile for d in loaded.devices] == ["water-meter", "heat-meter",
                                                   "heat-cost-allocator", None]


def test_config_errors_say_what_to_write(tmp_path: Path) -> None:
    import pydantic  # noqa: PLC0415

    def bus(**fields: Any) -> None:
        WMBusBusConfig.model_validate({"id": "r", "driver": "wmbus", **fields})

    with pytest.raises(pydantic.ValidationError, match="exactly one of port"):
        bus(receiver="im871a")
    with pytest.raises(pydantic.ValidationError, match="command: is for receiver: hex"):
        bus(receiver="im871a", command="rtl_wmbus")
    with pytest.raises(pydantic.ValidationError, match="amb8465 receives t1, c1, c1\\+t1; not s1"):
        bus(receiver="amb8465", port="/dev/ttyUSB0", modes=["s1"])
    with pytest.raises(pydantic.ValidationError, match="socket://HOST:PORT"):
        bus(receiver="hex", port="socket://nohost")
    with pytest.raises(pydantic.ValidationError, match="8-digit id"):
        WMBusDeviceConfig.model_validate({"id": "m", "bus": "r", "address": "1234"})
    assert WMBusDeviceConfig.model_validate({"id": "m", "bus": "r",
                                             "address": 1234567}).address == "01234567"


def test_a_radio_meter_s_poll_is_its_interval() -> None:
    # The water-meter profile brings poll: 15m for wired meters; on radio the interval rules.
    device = WMBusDeviceConfig.model_validate({"id": "m", "bus": "r", "address": "12345678",
                                               "poll": "15m", "interval": "16s"})
    assert device.poll == device.interval == 16.0
    assert WMBusDeviceConfig.model_validate({"id": "m", "bus": "r",
                                             "address": "12345678"}).poll == 900.0
