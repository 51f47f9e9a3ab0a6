"""Record decoder behaviours seen on radio meters (EN 13757-3): "no value" codings, invalid
dates and compact profiles. Records are built by hand from the standard's layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mbus.codec import MBusDecodeError, decode_records


def _one(hex_text: str):
    records, _more = decode_records(bytes.fromhex(hex_text))
    return records


def test_binary_all_ones_is_no_value() -> None:
    # 84 01 13 FFFFFFFF: a monthly volume slot not filled yet; not -0.001 m3.
    (rec,) = _one("840113FFFFFFFF")
    assert (rec.quantity, rec.value, rec.unit, rec.storage) == ("volume", None, None, 2)
    (rec,) = _one("0213FFFF")
    assert rec.value is None


def test_other_negative_binaries_stay_numbers() -> None:
    (rec,) = _one("0213FEFF")  # -2 l: a real (backflow) reading
    assert rec.value == -0.002
    (rec,) = _one("015BFF")  # one byte -1 C: a plausible reading, kept
    assert rec.value == -1


def test_type_f_date_with_invalid_bit_has_no_value() -> None:
    (rec,) = _one("046D" + "8B0E5634")  # IV bit (0x80 in the minute byte) set
    assert rec.quantity == "date_time" and rec.value is None
    (rec,) = _one("046D" + "0B0E5634")  # same point, valid
    assert rec.value == "2026-04-22T14:11:00"


def test_type_g_date_not_set_has_no_value() -> None:
    (rec,) = _one("426C0000")
    assert rec.quantity == "date" and rec.value is None


def _profile(records_hex: str):
    return [r for r in _one(records_hex) if r.modifiers]


def test_inverse_compact_profile_of_absolute_bcd_elements() -> None:
    # Storage 8: date 2026-02-01 and HCA 203, then an inverse profile (VIFE 0x13): spacing
    # control 0x3B (6-digit BCD elements, days, absolute), spacing 0xFE (one month), elements
    # 99, 52, then two not yet filled (FF...), then one stray byte (a partial element).
    data = ("8204" "6C" "4132"      # date 2026-02-01, storage 8
            "8B04" "6E" "030200"    # 203 HCA, storage 8
            "8D04" "EE13" "0F" "3BFE" "990000" "520000" "FFFFFF" "FFFFFF" "FF")
    got = [(r.value, r.storage, r.modifiers) for r in _profile(data)]
    assert got == [
        (99, 8, ("inverse_compact_profile", "element_1", "at_2026-01-01")),
        (52, 8, ("inverse_compact_profile", "element_2", "at_2025-12-01")),
    ]


def test_compact_profile_of_increments_from_the_base_value() -> None:
    # Storage 1: date 2025-01-31 and 100 l, then a compact profile (VIFE 0x1F) of positive
    # increments (spacing control 0x72: 16-bit elements, days, mode 01), one month apart.
    data = ("426C" "3F31"           # 2025-01-31 (type G), storage 1
            "4413" "64000000"       # 100 l at storage 1
            "CD00" "931F" "08" "72FE" "0A00" "1400" "0500")
    got = [(r.value, r.modifiers[-1]) for r in _profile(data)]
    assert got == [(pytest.approx(0.11), "at_2025-02-28"), (pytest.approx(0.13), "at_2025-03-31"),
                   (pytest.approx(0.135), "at_2025-04-30")]


def test_profile_without_its_base_value_gives_no_increments() -> None:
    assert _profile("CD00" "931F" "04" "72FE" "0A00") == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from(["13", "1E", "1F"]), st.integers(0, 0xFF),
       st.integers(0, 0xFF))
def test_any_profile_bytes_decode_or_raise_the_codec_error(body: bytes, vife: str, day: int,
                                                            month: int) -> None:
    # A date record (possibly no calendar date) and a base value, then a profile of any bytes.
    data = bytes.fromhex("426C") + bytes((day, month)) + bytes.fromhex("4413640000004D93") + \
        bytes.fromhex(vife) + bytes((len(body),)) + body
    try:
        records, _more = decode_records(data)
    except MBusDecodeError:
        return
    for rec in records:
        assert rec.value is None or isinstance(rec.value, (int, float, str))
