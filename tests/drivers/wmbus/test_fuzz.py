"""Fuzzing the radio decode path: whatever bytes a stick hands over, the answer is a Telegram or
a TelegramError with a one-line message, never another exception.

Random bytes rarely pass the L-field check, so most strategies start from the real telegrams of
the wmbusmeters file (plaintext, encrypted with their keys, ELL, AFL, compact, wired, manufacturer
CIs) and mutate them with a consistent L field, and with format A/B CRCs recomputed, so the
parser gets deep into ELL, AFL, TPL, decryption and the record walk. Budgets stay small here;
`make fuzz` (if present) runs the same properties longer.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.wmbus import CompactFormats, KeyStore, TelegramError, decode_telegram, telegram_to_json
from drivers.wmbus.crc import crc16
from tests.drivers.wmbus.vectors import WMBUSMETERS

EXAMPLES = int(os.environ.get("BATIGATE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ROWS = [json.loads(line) for line in WMBUSMETERS.read_text().splitlines()]
REAL = [(bytes.fromhex(r["telegram"][: len(r["telegram"]) // 2 * 2]),
         bytes.fromhex(r["key"]) if r["key"] else None) for r in _ROWS]
CACHE = CompactFormats()
for _frame, _key in REAL:  # teach the compact formats, so compact frames get expanded too
    try:
        decode_telegram(_frame, KeyStore.single(_key) if _key else None, compact=CACHE,
                        stored_plaintext=_key is None)
    except TelegramError:
        pass


def _decode(frame: bytes, key: bytes | None = None, fmt: str = "auto",
            plaintext: bool = False) -> None:
    try:
        telegram = decode_telegram(frame, KeyStore.single(key) if key else None,
                                   frame_format=fmt, compact=CACHE, stored_plaintext=plaintext)
    except TelegramError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    json.dumps(telegram_to_json(telegram), allow_nan=False)


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["auto", "stripped", "a", "b"]))
def test_any_bytes(data: bytes, fmt: str) -> None:
    _decode(data, fmt=fmt)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes | None, bool]:
    frame, key = draw(st.sampled_from(REAL))
    data = bytearray(frame)
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = draw(st.integers(1, max(1, len(data) - 1)))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    if data:
        data[0] = (len(data) - 1) & 0xFF  # keep the L field consistent so the layers are reached
    return bytes(data), key, draw(st.booleans())


@FUZZ
@given(mutated())
def test_mutated_real_telegrams(case: tuple[bytes, bytes | None, bool]) -> None:
    frame, key, plaintext = case
    _decode(frame, key, plaintext=plaintext)


@FUZZ
@given(mutated())
def test_mutated_with_valid_format_a_crcs(case: tuple[bytes, bytes | None, bool]) -> None:
    body, key, plaintext = case
    if len(body) < 11:
        return
    out = bytearray(body[:10]) + crc16(body[:10]).to_bytes(2, "big")
    for start in range(10, len(body), 16):
        block = body[start : start + 16]
        out += block + crc16(block).to_bytes(2, "big")
    _decode(bytes(out), key, "a", plaintext)
