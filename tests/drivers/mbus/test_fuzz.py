"""Fuzzing the decoder: whatever the bytes, the answer is a Telegram or MBusDecodeError.

Random bytes rarely get past the link layer, so most strategies here build frames with a correct
length and checksum around random or mutated user data, which sends the parser deep into the
DIF/VIF walk.  A decode that succeeds must also serialize to strict JSON.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.mbus.codec import MBusDecodeError, Telegram, decode_frame, decode_hex, telegram_to_json
from drivers.mbus.frames import encode_long, extract_frame, parse_frame
from tests.drivers.mbus.test_conformance import conformance_dir

CONFORMANCE = conformance_dir()  # ../shared from /work/main, ../../shared from a worktree
REAL_FRAMES = [
    bytes.fromhex(p.read_text())
    for sub in ("test-frames", "error-frames")
    for p in sorted((CONFORMANCE / sub).glob("*.hex"))
]
CI_FIELDS = [0x70, 0x71, 0x72, 0x73, 0x76, 0x77, 0x78, 0x7A, 0x51, 0x00, 0xFF]

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _decode(data: bytes) -> Telegram | None:
    try:
        telegram = decode_frame(data)
    except MBusDecodeError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    json.dumps(telegram_to_json(telegram), allow_nan=False)
    return telegram


def _rewrap(frame: bytes, user_data: bytes) -> bytes:
    """Same C, A and CI, new user data, with L and checksum recomputed."""
    c, a, ci = frame[4:7] if len(frame) >= 7 else (0x08, 0x01, 0x72)
    return encode_long(c, a, ci, user_data[:252])


def test_real_frames_are_loaded() -> None:
    assert len(REAL_FRAMES) >= 96


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    _decode(data)


@FUZZ
@given(st.sampled_from(CI_FIELDS), st.binary(max_size=252), st.integers(0, 255))
def test_random_user_data_in_a_valid_frame(ci: int, user_data: bytes, address: int) -> None:
    _decode(encode_long(0x08, address, ci, user_data))


@FUZZ
@given(
    st.sampled_from(CI_FIELDS[:2] + [0x72]),
    st.binary(min_size=12, max_size=12),
    st.lists(st.sampled_from([0x0F, 0x1F, 0x2F, 0x8D, 0xFD, 0xFB, 0xFC, 0x7C, 0xFF, 0x84, 0x6D]),
             max_size=40),
    st.binary(max_size=200),
)
def test_record_shaped_noise(ci: int, header: bytes, structure: list[int], tail: bytes) -> None:
    # Interleave bytes that carry meaning (extension bits, LVAR, plain text) with random ones.
    body = bytearray(header)
    for i, b in enumerate(structure):
        body.append(b)
        body.extend(tail[i : i + 2])
    _decode(encode_long(0x08, 1, ci, bytes(body[:252])))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = draw(st.sampled_from(REAL_FRAMES))
    user = bytearray(frame[7:-2]) if len(frame) > 9 else bytearray()
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if action == "truncate":
            user = user[: draw(st.integers(0, len(user)))]
        elif action == "insert":
            pos = draw(st.integers(0, len(user)))
            user[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif not user:
            continue
        elif action == "flip":
            pos = draw(st.integers(0, len(user) - 1))
            user[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            user[draw(st.integers(0, len(user) - 1))] = draw(st.integers(0, 255))
        else:
            del user[draw(st.integers(0, len(user) - 1))]
    return _rewrap(frame, bytes(user))


@FUZZ
@given(mutated_frames())
def test_mutated_real_frames(frame: bytes) -> None:
    _decode(frame)


@FUZZ
@given(st.sampled_from(REAL_FRAMES), st.integers(0, 400))
def test_truncated_real_frames_without_fixup(frame: bytes, cut: int) -> None:
    # A truncated frame on the wire: the link layer must say so, not the record walk.
    if cut < len(frame):
        assert _decode(frame[:cut]) is None


@FUZZ
@given(st.binary(max_size=400))
def test_stream_splitter_always_progresses(stream: bytes) -> None:
    buf = stream
    for _ in range(len(stream) + 1):  # each turn consumes at least one byte or stops
        found = extract_frame(buf)
        assert 0 <= found.garbage <= found.consumed <= len(buf)
        if found.frame is not None:
            parse_frame(found.frame)  # a frame it returns is always a valid frame
        if found.consumed == 0:
            break
        buf = buf[found.consumed :]
    else:
        raise AssertionError("extract_frame did not converge")


@FUZZ
@given(st.text(max_size=120))
def test_hex_text(text: str) -> None:
    try:
        decode_hex(text)
    except MBusDecodeError:
        pass
