"""Real telegrams of meters that are not in the wmbusmeters file (tests/drivers/wmbus/vectors.py):
decoding by the standard, not by the examples. Each decryption here is verified by the decoder
itself (2F2F for mode 5, the ELL payload CRC for AES-CTR), so a wrong IV would fail."""

from __future__ import annotations

import pytest

from drivers.wmbus import CompactFormats, KeyStore, KeyWrong, Unsupported, decode_telegram
from tests.drivers.wmbus.vectors import (
    ENGELMANN,
    ENGELMANN_KEY,
    FLOWIQ2200,
    FLOWIQ2200_KEY,
    MULTICAL62,
    MULTICAL62_KEY,
    MULTICAL303,
    MULTICAL303_KEY,
)

WRONG = KeyStore.single(bytes(16))


def _values(telegram) -> set[tuple[str, object, str | None, int]]:
    return {(r.quantity, r.value, r.unit, r.storage) for r in telegram.records}


def test_multical303_mode5() -> None:
    t = decode_telegram(MULTICAL303, KeyStore.single(MULTICAL303_KEY))
    assert (t.id, t.manufacturer, t.medium, t.encryption.mode) == \
        ("82788281", "KAM", "heat_outlet", 5)
    assert {("energy", 0, "J", 0), ("volume", 2.38, "m3", 0)} <= _values(t)
    with pytest.raises(KeyWrong):
        decode_telegram(MULTICAL303, WRONG)


def test_engelmann_mode5_total() -> None:
    t = decode_telegram(ENGELMANN, KeyStore.single(ENGELMANN_KEY))
    assert ("volume", 4.48, "m3", 0) in _values(t)


def test_multical62_ell_ctr_full_then_compact() -> None:
    keys = KeyStore.single(MULTICAL62_KEY)
    cache = CompactFormats()
    with pytest.raises(Unsupported, match="not learnt"):  # compact before any full frame
        decode_telegram(MULTICAL62[1], keys, compact=cache)
    full = decode_telegram(MULTICAL62[0], keys, compact=cache)
    assert full.encryption.ell and full.encryption.decrypted and full.id == "78489982"
    assert [r.dib + r.vib for r in full.records] == \
        [bytes.fromhex(h) for h in ("0414", "02FD17", "043B", "0259")]
    for compact in MULTICAL62[1:]:
        t = decode_telegram(compact, keys, compact=cache)
        assert t.ci == 0x79 and t.records
        assert ("volume", 386.19, "m3", 0) in _values(t) and ("volume", 386.19, "m3", 0) in \
            _values(full)
    with pytest.raises(KeyWrong, match="CRC"):
        decode_telegram(MULTICAL62[0], WRONG, compact=cache)


def test_flowiq2200_decrypts_then_waits_for_its_full_frame() -> None:
    # The payload CRC checks after decryption (else KeyWrong), and the compact format is unknown.
    with pytest.raises(Unsupported, match="not learnt"):
        decode_telegram(FLOWIQ2200, KeyStore.single(FLOWIQ2200_KEY), compact=CompactFormats())
    with pytest.raises(KeyWrong):
        decode_telegram(FLOWIQ2200, WRONG, compact=CompactFormats())
