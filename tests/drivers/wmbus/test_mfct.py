"""Manufacturer-specific layouts decoded from the makers' public documents (drivers/wmbus/mfct).

The telegrams are built from the document's table (no public telegram of the documented
generation was found); the file's vectors of other generations must stay raw."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.wmbus import decode_telegram, mfct
from drivers.wmbus.mfct import bmeters
from tests.drivers.wmbus.test_conformance import VECTORS


def _hydrodigit(version: int, block: bytes) -> bytes:
    body = (bytes.fromhex("44B409") + bytes.fromhex("21436587") + bytes((version, 0x07))
            + bytes.fromhex("7A2A000000") + bytes.fromhex("0C1364390400")  # 43.964 m3
            + bytes.fromhex("046D212F1635") + b"\x0f" + block)
    return bytes((len(body),)) + body


def _mfct_records(t):
    return [(r.quantity, r.value, r.unit, r.modifiers) for r in t.records
            if bmeters.TAG in r.modifiers]


def test_hydrodigit_generation_0x17_per_the_manual() -> None:
    # MS code 0x1E: reverse flow, fraud date, leak date, burst date. Reverse flow 15 l; fraud
    # on 3 Feb 2025 of type "reverse flow" (0x40 in the month's high nibble); no leak; a burst
    # on 29 Dec 2024 (day, month, year as binary numbers).
    block = bytes.fromhex("1E" "0F000000" "034219" "000000" "1D0C18")
    t = decode_telegram(_hydrodigit(0x17, block))
    assert _mfct_records(t) == [
        ("volume", 0.015, "m3", ("accumulation_if_negative", bmeters.TAG)),
        ("fraud_date", "2025-02-03", None, (bmeters.TAG,)),
        ("fraud_type", "reverse_flow", None, (bmeters.TAG,)),
        ("water_leak_date", None, None, (bmeters.TAG,)),
        ("burst_date", "2024-12-29", None, (bmeters.TAG,)),
    ]
    assert t.records[0].value == 43.964 and t.manufacturer_data == block


def test_fields_the_manual_does_not_size_end_the_decoding() -> None:
    # Battery (skipped) and reverse flow, then historic (bit 7): not sized here, left raw.
    block = bytes.fromhex("83" "2A" "05000000" "A40500")
    assert _mfct_records(decode_telegram(_hydrodigit(0x17, block))) == [
        ("volume", 0.005, "m3", ("accumulation_if_negative", bmeters.TAG))]


def test_short_block_gives_what_it_holds() -> None:
    assert bmeters.decode(bytes.fromhex("02" "0F00")) == []
    assert bmeters.decode(b"") == []


def test_other_generations_stay_raw() -> None:
    # The file's hydrodigit vectors are generations 0x13/0x15, whose MS code does not follow the
    # manual's table: no decoder is registered for them, their block stays raw.
    seen = 0
    with VECTORS.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["driver"] != "hydrodigit":
                continue
            t = decode_telegram(bytes.fromhex(row["telegram"]), stored_plaintext=True)
            assert t.version in (0x13, 0x15) and t.manufacturer_data
            assert _mfct_records(t) == []
            seen += 1
    assert seen == 3
    assert mfct.lookup("BMT", 0x13, "0F") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_never_raises_on_any_block(block: bytes) -> None:
    for record in bmeters.decode(block):
        assert bmeters.TAG in record.modifiers
