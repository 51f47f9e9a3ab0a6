"""EN 13757-4 CRC (polynomial 0x3D65, init 0, complemented, MSB first) and frame formats A and B.

Format A: block 1 is L C M A (10 bytes) + CRC, then 16-byte blocks each followed by its CRC,
the last one shorter. L counts the bytes after L without the CRCs.
Format B: L counts every byte after L, CRCs included; one CRC after the first 126 bytes
(or fewer, then it is the only one), a second one at the end of a longer frame.
"""

from __future__ import annotations

from drivers.wmbus.errors import CrcError, Malformed, Truncated

_POLY = 0x3D65


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _POLY) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc ^ 0xFFFF


def _check(block: bytes, stored: bytes, what: str) -> None:
    if crc16(block) != int.from_bytes(stored, "big"):
        raise CrcError(f"bad CRC in {what}")


def format_a_length(l_field: int) -> int:
    """Bytes on air of a format A frame whose L field is `l_field` (L byte included)."""
    if l_field < 9:
        return 0
    rest = l_field - 9
    return 1 + l_field + 2 * (1 + (rest + 15) // 16)


def strip_format_a(frame: bytes) -> bytes:
    if not frame:
        raise Truncated("empty frame")
    expected = format_a_length(frame[0])
    if expected == 0:
        raise Malformed(f"L field {frame[0]} too small for a link-layer header")
    if len(frame) < expected:
        raise Truncated(f"format A frame needs {expected} bytes, got {len(frame)}")
    _check(frame[:10], frame[10:12], "format A block 1")
    out = bytearray(frame[:10])
    pos, block = 12, 2
    while pos < expected:
        size = min(16, expected - pos - 2)
        crc_at = pos + size
        _check(frame[pos:crc_at], frame[crc_at : crc_at + 2], f"format A block {block}")
        out += frame[pos : pos + size]
        pos += size + 2
        block += 1
    return bytes(out)


def strip_format_b(frame: bytes) -> bytes:
    if not frame:
        raise Truncated("empty frame")
    total = frame[0] + 1
    if total < 12:
        raise Malformed(f"L field {frame[0]} too small for a format B frame")
    if len(frame) < total:
        raise Truncated(f"format B frame needs {total} bytes, got {len(frame)}")
    frame = frame[:total]
    if total <= 128:
        _check(frame[: total - 2], frame[total - 2 :], "format B block 2")
        body = bytearray(frame[: total - 2])
    else:
        _check(frame[:126], frame[126:128], "format B block 2")
        _check(frame[128 : total - 2], frame[total - 2 :], "format B block 3")
        body = bytearray(frame[:126] + frame[128 : total - 2])
    body[0] = len(body) - 1  # L as a stick delivers it: the bytes after L, no CRCs
    return bytes(body)


def format_b_valid(frame: bytes) -> bool:
    try:
        strip_format_b(frame)
    except (CrcError, Malformed):
        return False
    return True
