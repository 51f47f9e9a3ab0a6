"""What a tolerant, standard-conforming decoder accepts and what it still refuses."""

from __future__ import annotations

import pytest

from drivers.wmbus import KeyStore, Malformed, decode_telegram
from tests.drivers.wmbus.builders import mode5_telegram

KEY = bytes(range(16))
VOLUME = bytes.fromhex("0413D2040000")  # 1.234 m3


def test_stray_bytes_after_the_encrypted_blocks_are_set_aside() -> None:
    # Two bytes outside the encryption that form no record (a logger's leftover CRC, as in the
    # wmbusmeters amiplus vector): the verified records are kept, the tail is reported.
    t = decode_telegram(mode5_telegram(KEY, VOLUME, tail=b"\xde\x47"), KeyStore.single(KEY))
    assert [(r.quantity, r.value) for r in t.records] == [("volume", 1.234)]
    assert t.unparsed_tail == b"\xde\x47"


def test_plaintext_records_after_the_encrypted_blocks_are_decoded() -> None:
    t = decode_telegram(mode5_telegram(KEY, VOLUME, tail=bytes.fromhex("02FD170000")),
                        KeyStore.single(KEY))
    assert [r.quantity for r in t.records][0] == "volume"
    assert len(t.records) == 2 and t.unparsed_tail == b""


def test_broken_records_inside_the_encrypted_blocks_are_still_refused() -> None:
    # LVAR 0xF7 is reserved: the decrypted (verified) records are broken, so no tail excuses it.
    with pytest.raises(Malformed):
        decode_telegram(mode5_telegram(KEY, bytes.fromhex("0D13F7"), tail=b"\xde\x47"),
                        KeyStore.single(KEY))


def test_stray_bytes_in_an_unencrypted_telegram_are_refused() -> None:
    frame = bytes.fromhex("44C5147856341230077A2100000004130100000047")
    with pytest.raises(Malformed):
        decode_telegram(bytes((len(frame),)) + frame)
