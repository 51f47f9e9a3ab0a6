"""Codec details the real frames do not cover, and the `mbus decode` command logic."""

from __future__ import annotations

import json
import math
import struct
from fractions import Fraction
from pathlib import Path

import pytest

from drivers.mbus import frames
from drivers.mbus.codec import (
    MBusDecodeError,
    Telegram,
    decode_frame,
    decode_user_data,
    is_error_code,
    main_decode,
    telegram_to_json,
)

HEADER = bytes.fromhex("78563412 2D2C 01 07 2A 00 0000")  # id 12345678, KAM, v1, water


def records(body: str) -> Telegram:
    return decode_frame(frames.rsp_ud(3, 0x72, HEADER + bytes.fromhex(body)))


def test_header() -> None:
    t = records("")
    assert (t.id, t.manufacturer, t.version, t.medium) == ("12345678", "KAM", 1, "water")
    assert (t.access_number, t.status, t.address, t.records) == (42, 0, 3, [])


@pytest.mark.parametrize(
    ("body", "value", "unit", "quantity"),
    [
        ("04 06 10270000", 10_000 * 3_600_000, "J", "energy"),  # kWh int32
        ("04 13 39300000", 12.345, "m3", "volume"),  # litres
        ("0C 14 45230100", 123.45, "m3", "volume"),  # BCD8, 0.01 m3
        ("0A 14 45F2", -2.45, "m3", "volume"),  # BCD with F top nibble: negative
        ("02 3B 6400", 100 / 1000 / 3600, "m3/s", "volume_flow"),  # l/h
        ("02 59 1027", 100.0, "Cel", "flow_temperature"),  # 0.01 degC
        ("02 61 FEFF", -0.02, "K", "temperature_difference"),  # signed int16
        ("02 22 0A00", 36_000, "s", "on_time"),  # hours
        ("02 69 E803", 1_000_000.0, "Pa", "pressure"),  # 1000 x 10 mbar
        ("05 2B 0000C03F", 1.5, "W", "power"),  # real32
        ("02 FD 48 E600", 23.0, "V", "voltage"),  # 0.1 V
        ("02 FB 1B 3200", 50, "%RH", "relative_humidity"),  # FB table, 1 %
        ("04 93 74 D2040000", 1.234 * 0.01, "m3", "volume"),  # VIFE correction factor 10^-2
        ("03 FB 5A D00700", (200.0 - 32) * 5 / 9, "Cel", "flow_temperature"),  # 0.1 degF
    ],
)
def test_values_in_senml_units(body: str, value: float, unit: str, quantity: str) -> None:
    (r,) = records(body).records
    assert (r.unit, r.quantity) == (unit, quantity)
    assert r.value == pytest.approx(value, rel=1e-12)


def test_exact_scaling() -> None:
    (r,) = records("04 14 3D300000").records  # the Itron Cyble index
    assert r.value == 123.49  # not 123.49000000000001
    (e,) = records("04 03 01000000").records
    assert e.value == 3600 and isinstance(e.value, int)  # 1 Wh is exactly 3600 J


def test_storage_tariff_subunit_from_difes() -> None:
    # DIF C4: storage bit 1, ext; DIFE 9F: storage +0xF<<1, tariff 1, ext; DIFE 42: subunit 2...
    (r,) = records("C4 9F 42 13 01000000").records
    assert r.storage == 1 | (0xF << 1) | (0x2 << 5)
    assert r.tariff == 1
    assert r.subunit == 2
    assert r.function == "instantaneous"
    (m,) = records("14 13 01000000").records
    assert m.function == "maximum"
    (e,) = records("34 13 01000000").records
    assert e.function == "error"


def test_dates() -> None:
    t = records("04 6D 1A2F6511 02 6C 7F1C 06 6D 1E2A0F1E0C00 04 6D 9A2F6511")
    assert [r.value for r in t.records] == [
        "2011-01-05T15:26:00",  # type F, Kamstrup example
        "2011-12-31",  # type G
        "2000-12-30T15:42:30",  # type I
        None,  # type F with IV bit
    ]


def test_lvar_text_bcd_binary() -> None:
    t = records("0D FD 0C 03 434241 0D FD 0C C2 3412 0D FD 0C D1 05 0D FD 0C E2 0102")
    assert [r.value for r in t.records] == ["ABC", 1234, -5, 0x0201]
    with pytest.raises(MBusDecodeError, match="reserved LVAR"):
        records("0D FD 0C FB")


def test_invalid_bcd_is_kept_as_digits_with_the_vif_unit() -> None:
    # Issue #15: the error code keeps the unit of what the record measures.
    (r,) = records("0A 13 BDDD").records
    assert r.value == "DDBD" and r.unit == "m3" and is_error_code(r)
    (flow,) = records("0B 3B EB B4 DD").records
    assert flow.value == "DDB4EB" and flow.unit == "m3/s" and flow.quantity == "volume_flow"
    (number,) = records("0A 13 3412").records
    assert number.value == pytest.approx(1.234) and not is_error_code(number)
    (text,) = records("0D FD 0C 03 434241").records
    assert text.value == "ABC" and text.unit is None and not is_error_code(text)


@pytest.mark.parametrize(("body", "value", "unit", "quantity"), [
    # volume (litres) per hour -> m3/s
    ("04 93 22 10 0E 00 00", Fraction(3600, 1000) / 3600, "m3/s", "volume_per_hour"),
    # volume (litres) per minute -> m3/s
    ("02 93 21 3C 00", Fraction(60, 1000) / 60, "m3/s", "volume_per_minute"),
    # energy (Wh) per day -> W
    ("04 83 23 80 51 01 00", Fraction(86400 * 3600, 86400), "W", "energy_per_day"),
    # mass (kg) per second -> kg/s
    ("02 9B 20 05 00", 5, "kg/s", "mass_per_second"),
    # energy (Wh) per week -> W
    ("04 83 24 80 3A 09 00", Fraction(7 * 86400 * 3600, 7 * 86400), "W", "energy_per_week"),
])
def test_per_time_rates_keep_a_unit(body: str, value: Fraction, unit: str, quantity: str) -> None:
    (r,) = records(body).records
    assert (r.unit, r.quantity) == (unit, quantity)
    assert r.value == pytest.approx(float(value), rel=1e-12)


def test_rates_without_a_fixed_time_span_have_no_unit() -> None:
    (month,) = records("02 93 25 3C 00").records  # litres per month: a month has no fixed length
    assert (month.quantity, month.unit, month.value) == ("volume_per_month", None, 0.06)
    (litre,) = records("02 83 2C 05 00").records  # Wh per litre
    assert (litre.quantity, litre.unit, litre.value) == ("energy_per_litre", None, 18000)


def test_plain_text_vif_and_manufacturer_data() -> None:
    t = records("02 FC 03 48 52 25 74 D4 11 0F 01 02 03")
    rh, mfr = t.records
    assert (rh.quantity, rh.unit, rh.value) == ("relative_humidity", "%RH", pytest.approx(45.64))
    assert (mfr.quantity, mfr.value) == ("manufacturer_data", "01 02 03")
    assert not t.more_records_follow
    assert records("1F").more_records_follow


def test_filler_and_manufacturer_vif() -> None:
    t = records("2F 2F 02 FF 21 0500 2F")
    (r,) = t.records
    assert (r.quantity, r.value, r.modifiers) == ("manufacturer_specific", 5, ())


def test_modifiers_and_changed_meanings() -> None:
    t = records("04 86 3C 10000000 04 93 7F 01000000 04 A2 61 05000000 04 ED 39 1A2F6511")
    energy, volume, duration, start = t.records
    assert energy.modifiers == ("accumulation_if_negative",) and energy.unit == "J"
    assert volume.modifiers == ("manufacturer_specific",)
    assert (duration.quantity, duration.unit) == ("on_time_first_duration", "s")
    assert duration.value == 300  # 5 minutes
    assert (start.quantity, start.value) == ("date_time_start_date", "2011-01-05T15:26:00")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("04 13 0100", "premature end"),
        ("84", "premature end of data reading DIFE"),
        ("0D 13 05 4142", "premature end"),
        ("3F", "reserved special DIF"),
        ("04" + " 93" + " FF" * 10 + " 01 00000000", "more than 10 VIFEs"),
        ("84" + " 80" * 10 + " 00 13 00000000", "more than 10 DIFEs"),
    ],
)
def test_malformed_records(body: str, message: str) -> None:
    with pytest.raises(MBusDecodeError, match=message):
        records(body)


def test_other_ci_fields() -> None:
    short = decode_user_data(0x7A, bytes.fromhex("05 00 0000 04 13 01000000"), 9)
    assert (short.id, short.access_number, short.records[0].value) == ("", 5, 0.001)
    none = decode_user_data(0x78, bytes.fromhex("04 13 02000000"))
    assert none.access_number is None and none.records[0].value == 0.002
    msb = decode_user_data(0x76, bytes.fromhex("12345678 2C2D 01 07 2A 00 0000 04 13 00000003"))
    assert (msb.id, msb.manufacturer, msb.records[0].value) == ("12345678", "KAM", 0.003)
    with pytest.raises(MBusDecodeError, match="unsupported CI field 0x51"):
        decode_user_data(0x51, b"")
    with pytest.raises(MBusDecodeError, match="without an error code"):
        decode_user_data(0x70, b"")
    with pytest.raises(MBusDecodeError, match="not RSP_UD"):
        decode_frame(frames.encode_long(0x53, 1, 0x72, HEADER))
    with pytest.raises(MBusDecodeError, match="long frame"):
        decode_frame(frames.req_ud2(1))


def test_json_shape() -> None:
    t = records("04 13 39300000 05 2B 0000C07F")  # the second value is a real32 NaN
    doc = telegram_to_json(t)
    assert list(doc) == [
        "id", "manufacturer", "version", "medium", "access_number", "status", "records"
    ]
    assert list(doc["records"][0]) == [
        "value", "unit", "quantity", "function", "storage", "tariff", "subunit"
    ]
    assert math.isnan(struct.unpack("<f", bytes.fromhex("0000C07F"))[0])
    assert math.isnan(t.records[1].value)  # type: ignore[arg-type]
    assert doc["records"][1]["value"] is None
    json.dumps(doc, allow_nan=False)


def test_main_decode_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "meter.hex"
    wire = frames.rsp_ud(3, 0x72, HEADER + bytes.fromhex("04 13 39300000")).hex(" ").upper()
    path.write_text(wire[:20] + "\n" + wire[20:] + "\n")
    assert main_decode(str(path), as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["id"] == "12345678" and doc["records"][0]["value"] == 12.345


def test_main_decode_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "meter.hex"
    path.write_text(frames.rsp_ud(3, 0x72, HEADER + bytes.fromhex("04 13 39300000")).hex())
    assert main_decode(str(path), as_json=False) == 0
    out = capsys.readouterr().out
    assert "12345678" in out and "volume" in out and "12.345" in out


def test_main_decode_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.hex"
    bad.write_text("68 04 04 68 08 01 70 08 81 16")
    assert main_decode(str(bad), as_json=True) == 1
    err = capsys.readouterr().err
    busy = "meter reports application error 8: application too busy for handling readout request"
    assert err == f"{bad}: {busy}\n"
    assert main_decode(str(tmp_path / "missing.hex"), as_json=False) == 1
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "text.hex").write_text("hello")
    assert main_decode(str(tmp_path / "text.hex"), as_json=False) == 1
    assert "not hexadecimal" in capsys.readouterr().err
