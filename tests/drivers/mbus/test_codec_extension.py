"""VIFE 0x7C, "extension of combinable (orthogonal) VIFE codes" (EN 13757-3:2018): the VIFE
after it says where an electricity quantity is measured (a phase, between phases, a quadrant).
It is not a record error code, though it has the same numbers. Records built by hand from the
standard's layout; the phase voltages are what a real Apator Amiplus sends (wmbusmeters vectors,
lines 4-8: 0A FD C9 FC 01/02/03)."""

from __future__ import annotations

import pytest

from drivers.mbus.codec import MBusDecodeError, decode_records


def _one(hex_text: str):
    records, _more = decode_records(bytes.fromhex(hex_text))
    (record,) = records
    return record


@pytest.mark.parametrize(("code", "tag"), [("01", "at_phase_l1"), ("02", "at_phase_l2"),
                                           ("03", "at_phase_l3"), ("04", "at_neutral"),
                                           ("05", "between_phases_l1_l2"),
                                           ("0B", "at_quadrant_q4")])
def test_extension_names_where_the_value_is_measured(code: str, tag: str) -> None:
    # 0A FD C9 FC xx 4502: 4 BCD digits, FD 49 volts x 10^0 (E bit set), FC = 0x7C with E bit.
    rec = _one(f"0AFDC9FC{code}4502")
    assert (rec.quantity, rec.value, rec.unit) == ("voltage", 245, "V")
    assert rec.modifiers == (tag,)
    assert not any(m.startswith("record_error") for m in rec.modifiers)


def test_unknown_extension_code_is_a_neutral_tag() -> None:
    # 0B AB C8 FC 10 000000: power W, upper limit, extension code 0x10 (not named here).
    rec = _one("0BABC8FC10000000")
    assert (rec.quantity, rec.value, rec.unit) == ("power", 0, "W")
    assert rec.modifiers == ("upper_limit", "extended_vife_10")


def test_vifes_after_the_extension_code_are_read_again_from_table_15() -> None:
    # FC 81 (phase L1, E bit set) then 3B (accumulation if positive): both apply.
    rec = _one("04ABFC813B10000000")
    assert (rec.unit, rec.value) == ("W", 16)
    assert rec.modifiers == ("at_phase_l1", "accumulation_if_positive")


def test_extension_without_its_code_is_malformed() -> None:
    # FC with its E bit set and the telegram ends: a truncated VIB, not a silent record.
    with pytest.raises(MBusDecodeError):
        decode_records(bytes.fromhex("0AFDC9FC"))
