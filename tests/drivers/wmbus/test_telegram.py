"""decode_telegram layer by layer: link formats, ELL, AFL, TPL, security modes 5 and 7, and the
errors a receiver counts. Vectors are real telegrams (tests/drivers/wmbus/vectors.py; real
encrypted ones of other meters in test_outside_file.py); for mode 7, where no public telegram
with its key exists, and for a few variations, the telegram is built here from a real plaintext
with `cryptography`'s AES, and that is said in the test."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from drivers.wmbus import (
    CompactFormats,
    CrcError,
    KeyMissing,
    KeyStore,
    KeyWrong,
    Malformed,
    TelegramError,
    Truncated,
    Unsupported,
    decode_telegram,
    telegram_to_json,
)
from drivers.wmbus.crc import crc16
from tests.drivers.wmbus.builders import ctr_encrypt, mode7_telegram
from tests.drivers.wmbus.vectors import ENGELMANN, ENGELMANN_KEY, IPERL, wmbusmeters

WRONG_KEY = bytes(range(16))


def _with_format_a(body: bytes) -> bytes:
    out = bytearray(body[:10]) + crc16(body[:10]).to_bytes(2, "big")
    for start in range(10, len(body), 16):
        block = body[start : start + 16]
        out += block + crc16(block).to_bytes(2, "big")
    return bytes(out)


def _with_format_b(body: bytes) -> bytes:
    assert len(body) <= 125
    framed = bytes((len(body) + 1,)) + body[1:]
    return framed + crc16(framed).to_bytes(2, "big")


def test_plaintext_short_header() -> None:
    t = decode_telegram(IPERL)
    assert (t.id, t.manufacturer, t.version, t.medium, t.medium_code) == \
        ("33225544", "SEN", 0x68, "water", 7)
    assert (t.access_number, t.status) == (0x55, 0)
    assert (t.encryption.mode, t.encryption.decrypted) == (0, False)
    assert [(r.quantity, r.value, r.unit) for r in t.records] == \
        [("volume", 123.529, "m3"), ("volume_flow", 0.0, "m3/s")]
    assert t.address_key() == ("SEN", "33225544", 0x68, 7)
    assert telegram_to_json(t)["encryption"] == {"mode": 0, "decrypted": False}


@pytest.mark.parametrize("fmt", ["auto", "a"])
def test_format_a_with_crcs(fmt: str) -> None:
    framed = _with_format_a(IPERL)
    assert decode_telegram(framed, frame_format=fmt).records == decode_telegram(IPERL).records


@pytest.mark.parametrize("fmt", ["auto", "b"])
def test_format_b_with_crcs(fmt: str) -> None:
    framed = _with_format_b(IPERL)
    assert decode_telegram(framed, frame_format=fmt).records == decode_telegram(IPERL).records


def test_format_b_long_frame_two_crcs() -> None:
    body = ENGELMANN  # 162 bytes: format B puts a CRC after byte 126 and one at the end
    framed = bytearray(body[:126])
    framed[0] = len(body) + 4 - 1
    framed += crc16(bytes(framed)).to_bytes(2, "big")
    tail = body[126:]
    framed += tail + crc16(tail).to_bytes(2, "big")
    t = decode_telegram(bytes(framed), KeyStore.single(ENGELMANN_KEY), frame_format="b")
    assert t.records == decode_telegram(ENGELMANN, KeyStore.single(ENGELMANN_KEY)).records


@pytest.mark.parametrize("builder", [_with_format_a, _with_format_b])
def test_damaged_bit_is_a_crc_error(builder) -> None:
    framed = bytearray(builder(IPERL))
    framed[14] ^= 0x04
    with pytest.raises(CrcError):
        decode_telegram(bytes(framed), frame_format="a" if builder is _with_format_a else "b")


def test_mode5_real_telegram_outside_the_file() -> None:
    t = decode_telegram(ENGELMANN, KeyStore.single(ENGELMANN_KEY))
    assert (t.id, t.manufacturer, t.medium) == ("50898527", "EFE", "water")
    assert t.encryption == dataclasses.replace(t.encryption, mode=5, decrypted=True)
    values = [(r.quantity, r.value, r.unit, r.storage) for r in t.records]
    assert ("volume", 4.48, "m3", 0) in values


def test_mode5_wrong_key_and_no_key() -> None:
    with pytest.raises(KeyWrong, match="2F2F"):
        decode_telegram(ENGELMANN, KeyStore.single(WRONG_KEY))
    with pytest.raises(KeyMissing) as missing:
        decode_telegram(ENGELMANN, KeyStore())
    assert missing.value.header is not None and missing.value.header.id == "50898527"
    assert missing.value.header.manufacturer == "EFE"


def test_key_looked_up_by_meter_id() -> None:
    store = KeyStore()
    store.add("50898527", ENGELMANN_KEY, "EFE")
    assert decode_telegram(ENGELMANN, store).encryption.decrypted
    other = KeyStore()
    other.add("50898527", ENGELMANN_KEY, "KAM")  # same id, another maker: not this meter
    with pytest.raises(KeyMissing):
        decode_telegram(ENGELMANN, other)


def test_stored_plaintext_only_when_asked() -> None:
    row = wmbusmeters("istawater")[0]  # mode 7, stored decrypted by wmbusmeters
    with pytest.raises(KeyMissing):
        decode_telegram(row["frame"])
    t = decode_telegram(row["frame"], stored_plaintext=True)
    assert t.encryption.mode == 7 and not t.encryption.decrypted
    assert t.id == row["id"]


# ------------------------------------------------------------------ ELL AES-CTR (Kamstrup)


def test_ell_ctr_decrypts_and_checks_payload_crc() -> None:
    plain = wmbusmeters("multical21")[0]["frame"]
    key = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    encrypted = ctr_encrypt(plain, key)
    assert encrypted != plain
    t = decode_telegram(encrypted, KeyStore.single(key))
    assert t.encryption.ell and t.encryption.decrypted
    assert t.records == decode_telegram(plain, stored_plaintext=True).records
    with pytest.raises(KeyWrong, match="CRC"):
        decode_telegram(encrypted, KeyStore.single(WRONG_KEY))
    with pytest.raises(KeyMissing):
        decode_telegram(encrypted)


def test_compact_frame_needs_the_full_frame_first() -> None:
    full, compact = (r["frame"] for r in wmbusmeters("multical21")[:2])
    cache = CompactFormats()
    with pytest.raises(Unsupported, match="not learnt"):
        decode_telegram(compact, compact=cache, stored_plaintext=True)
    decode_telegram(full, compact=cache, stored_plaintext=True)
    t = decode_telegram(compact, compact=cache, stored_plaintext=True)
    assert ("volume", 6.408, "m3") in [(r.quantity, r.value, r.unit) for r in t.records]


# ------------------------------------------------------------------ mode 7 (built here)


def test_mode7_kdf_a_decrypts_and_checks_mac() -> None:
    key = bytes.fromhex("0102030405060708090A0B0C0D0E0F11")
    frame = mode7_telegram(key, bytes.fromhex("0413B80B0000"))  # 3.000 m3
    t = decode_telegram(frame, KeyStore.single(key))
    assert t.encryption.mode == 7 and t.encryption.decrypted
    assert [(r.quantity, r.value) for r in t.records] == [("volume", 3.0)]
    with pytest.raises(KeyWrong, match="MAC"):
        decode_telegram(frame, KeyStore.single(WRONG_KEY))
    tampered = bytearray(frame)
    tampered[-1] ^= 1
    with pytest.raises(KeyWrong, match="MAC"):
        decode_telegram(bytes(tampered), KeyStore.single(key))


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(("frame", "error"), [
    (b"", Truncated),
    (IPERL[:-3], Truncated),
    (IPERL + b"\x00", Malformed),
    (bytes(600), Malformed),
    (bytes.fromhex("0B44AE4C4455223368077A55"), Truncated),  # short header cut
    (bytes.fromhex("0A44AE4C44552233680751"), Unsupported),  # CI 0x51: not a TPL
])
def test_refusals(frame: bytes, error: type[TelegramError]) -> None:
    with pytest.raises(error) as caught:
        decode_telegram(frame)
    assert str(caught.value) and "\n" not in str(caught.value)


def test_undefined_security_mode_is_unsupported() -> None:
    frame = bytearray(IPERL)
    frame[14] = 0x03  # CFG high byte: mode 3 (DES)
    with pytest.raises(Unsupported, match="mode 3"):
        decode_telegram(bytes(frame))


def test_meter_time_from_the_date_time_record() -> None:
    row = next(r for r in wmbusmeters("amiplus") if r["id"] == "10101010")
    t = decode_telegram(row["frame"], stored_plaintext=True)
    assert t.meter_time == datetime(2019, 3, 20, 12, 57)


def test_manufacturer_ci_kept_raw() -> None:
    row = wmbusmeters("apator08")[0]
    t = decode_telegram(row["frame"])
    assert t.records == [] and t.manufacturer_data == row["frame"][11:]


def test_wired_frame_relayed() -> None:
    row = wmbusmeters("nemo")[0]
    t = decode_telegram(row["frame"])
    assert (t.c_field, t.manufacturer, t.id) == (0x08, "IME", row["id"]) and t.records


def test_ell_encrypted_without_key_never_taken_as_plaintext() -> None:
    """A receiver (stored_plaintext False) with no key refuses an ELL-encrypted telegram even
    when its raw payload CRC happens to check: only a tool's stored plaintext may pass."""
    row = wmbusmeters("multical21")[0]  # stored decrypted: its payload CRC checks as it is
    with pytest.raises(KeyMissing):
        decode_telegram(row["frame"])


def test_mode5_with_zero_blocks_is_plaintext() -> None:
    frame = bytearray(IPERL)
    frame[13:15] = (0x0500).to_bytes(2, "little")  # mode 5, 0 encrypted blocks
    t = decode_telegram(bytes(frame))
    assert (t.encryption.mode, t.encryption.decrypted) == (5, False)
    assert t.records == decode_telegram(IPERL).records
