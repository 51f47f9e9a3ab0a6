"""Link layer: building and parsing frames, secondary addresses, stream splitting."""

from __future__ import annotations

import pytest

from drivers.mbus import frames
from drivers.mbus.frames import MBusDecodeError


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(
    ("built", "wire"),
    [
        (frames.req_ud2(1), "10 5B 01 5C 16"),
        (frames.req_ud2(1, fcb=True), "10 7B 01 7C 16"),
        (frames.snd_nke(0xFD), "10 40 FD 3D 16"),
        (frames.select_secondary("12345678"), "68 0B 0B 68 53 FD 52 78 56 34 12 FF FF FF FF B2 16"),
        (frames.encode_long(0x53, 0xFE, 0x51), "68 03 03 68 53 FE 51 A2 16"),  # control frame
    ],
)
def test_known_frames(built: bytes, wire: str) -> None:
    assert built == h(wire)


@pytest.mark.parametrize(
    ("code", "wire"),
    [("SEN", "AE 4C"), ("KAM", "2D 2C"), ("ITW", "97 26"), ("ACW", "77 04"), ("ZRI", "49 6A")],
)
def test_manufacturer_codes(code: str, wire: str) -> None:
    value = int.from_bytes(h(wire), "little")
    assert frames.encode_manufacturer(code) == value
    assert frames.decode_manufacturer(value) == code


def test_parse_round_trips() -> None:
    for frame in (
        frames.Ack(),
        frames.ShortFrame(0x7B, 3),
        frames.LongFrame(0x08, 5, 0x72, bytes(range(40))),
        frames.LongFrame(0x53, 0xFD, 0x52),
    ):
        assert frames.parse_frame(frames.encode(frame)) == frame


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("", "empty"),
        ("E5 E5", "after ACK"),
        ("10 5B 01 5D 16", "checksum"),
        ("10 5B 01 5C 17", "stop byte"),
        ("68 04 05 68 08 01 72 00 7B 16", "length bytes differ"),
        ("68 04 04 69 08 01 72 00 7B 16", "second start"),
        ("68 05 05 68 08 01 72 00 7B 16", "needs 11 bytes"),
        ("68 04 04 68 08 01 72 00 7C 16", "checksum"),
        ("42", "unknown start"),
    ],
)
def test_parse_rejects(wire: str, message: str) -> None:
    with pytest.raises(MBusDecodeError, match=message):
        frames.parse_frame(h(wire))


def test_secondary_wildcards() -> None:
    address = frames.secondary_address("21000015", "ITW", 0x20, 0x16)
    assert frames.secondary_matches(frames.secondary_address("21000015"), address)
    assert frames.secondary_matches(frames.secondary_address("FFFFFF15", "ITW"), address)
    assert frames.secondary_matches(frames.secondary_address("2F0F0F1F"), address)
    assert not frames.secondary_matches(frames.secondary_address("FFFFFF16"), address)
    assert not frames.secondary_matches(frames.secondary_address("FFFFFFFF", "KAM"), address)
    assert not frames.secondary_matches(frames.secondary_address("FFFFFFFF", version=1), address)
    assert not frames.secondary_matches(frames.secondary_address("FFFFFFFF", medium=7), address)
    with pytest.raises(ValueError):
        frames.encode_id("1234")


def test_extract_frame_skips_noise_and_waits_for_the_rest() -> None:
    request = frames.req_ud2(7)
    found = frames.extract_frame(b"\x00\x42" + request + b"\xe5")
    assert found == frames.Extracted(request, 2 + len(request), 2)
    partial = frames.extract_frame(b"\x01" + request[:3])
    assert partial == frames.Extracted(None, 1, 1)


def test_extract_frame_drops_a_broken_long_frame_whole() -> None:
    # The data holds an E5: scanning inside the broken frame would report a false ACK.
    broken = bytearray(frames.rsp_ud(1, 0x72, b"\xe5" * 20))
    broken[-2] ^= 0xFF
    found = frames.extract_frame(bytes(broken))
    assert found == frames.Extracted(None, len(broken), len(broken))
