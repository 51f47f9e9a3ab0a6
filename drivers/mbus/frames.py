"""Wired M-Bus link layer (EN 13757-2): the four frame shapes, their checksum, parse and build.

Frames on the wire:

    single character   E5                                  (ACK)
    short frame        10 C A CS 16                         CS = (C + A) mod 256
    control frame      68 03 03 68 C A CI CS 16             CS = sum(C..CI) mod 256
    long frame         68 L L 68 C A CI data.. CS 16        L = 3 + len(data)

The master talks with short frames (SND_NKE, REQ_UD2) and long frames (SND_UD: selection,
application reset); the slave answers E5 or a long RSP_UD frame.  Everything here is pure
byte work so the driver, the simulator and the tests share one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

ACK = 0xE5
START_SHORT = 0x10
START_LONG = 0x68
STOP = 0x16

# C field, master -> slave (bit 6 = PRM set).  FCB is bit 5, FCV bit 4: REQ_UD2 and SND_UD always
# carry FCV=1, so the FCB alternation is meaningful for them; SND_NKE has FCV=0 and resets it.
C_SND_NKE = 0x40
C_SND_UD = 0x53
C_REQ_UD1 = 0x5A
C_REQ_UD2 = 0x5B
FCB = 0x20
FCV = 0x10
# C field, slave -> master: RSP_UD, possibly with ACD (0x20, class 1 data waiting) and DFC (0x10).
C_RSP_UD = 0x08
C_RSP_MASK = 0xCF  # ignores ACD and DFC when checking for RSP_UD

# CI field, master -> slave.
CI_DATA_SEND = 0x51
CI_SELECT = 0x52
CI_APPLICATION_RESET = 0x50

# Addresses.
ADDR_UNCONFIGURED = 0
ADDR_NETWORK_LAYER = 0xFD  # the slave selected by secondary address
ADDR_BROADCAST_REPLY = 0xFE
ADDR_BROADCAST = 0xFF

MAX_LONG_DATA = 252  # L is one byte and counts C, A and CI


class MBusDecodeError(ValueError):
    """A frame or telegram that cannot be decoded; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class Ack:
    """The single character E5."""


@dataclass(frozen=True, slots=True)
class ShortFrame:
    c: int
    a: int


@dataclass(frozen=True, slots=True)
class LongFrame:
    """A long frame; a control frame is a long frame with no data (L = 3)."""

    c: int
    a: int
    ci: int
    data: bytes = b""


Frame = Ack | ShortFrame | LongFrame


def checksum(body: bytes | bytearray) -> int:
    """Arithmetic sum modulo 256 of C, A, CI and data: the M-Bus frame check."""
    return sum(body) & 0xFF


# --------------------------------------------------------------------------- build


def encode_short(c: int, a: int) -> bytes:
    return bytes((START_SHORT, c & 0xFF, a & 0xFF, (c + a) & 0xFF, STOP))


def encode_long(c: int, a: int, ci: int, data: bytes = b"") -> bytes:
    if len(data) > MAX_LONG_DATA:
        raise ValueError(f"long frame data of {len(data)} bytes exceeds {MAX_LONG_DATA}")
    body = bytes((c & 0xFF, a & 0xFF, ci & 0xFF)) + bytes(data)
    length = len(body)
    return bytes((START_LONG, length, length, START_LONG)) + body + bytes((checksum(body), STOP))


def encode(frame: Frame) -> bytes:
    if isinstance(frame, Ack):
        return bytes((ACK,))
    if isinstance(frame, ShortFrame):
        return encode_short(frame.c, frame.a)
    return encode_long(frame.c, frame.a, frame.ci, frame.data)


def snd_nke(address: int) -> bytes:
    """Link reset: the slave answers E5 and forgets its FCB; to 0xFD it also deselects."""
    return encode_short(C_SND_NKE, address)


def req_ud2(address: int, fcb: bool = False) -> bytes:
    """Request class 2 data; toggle `fcb` between telegrams to walk a multi-telegram answer."""
    return encode_short(C_REQ_UD2 | (FCB if fcb else 0), address)


def rsp_ud(address: int, ci: int, data: bytes, acd: bool = False) -> bytes:
    return encode_long(C_RSP_UD | (0x20 if acd else 0), address, ci, data)


# ------------------------------------------------------------- secondary addresses


def encode_manufacturer(code: str) -> int:
    """Three letters A..Z packed five bits each (EN 13757-3 / FLAG association)."""
    if len(code) != 3 or not all("A" <= ch <= "Z" for ch in code):
        raise ValueError(f"manufacturer code must be three letters A-Z, got {code!r}")
    return ((ord(code[0]) - 64) << 10) | ((ord(code[1]) - 64) << 5) | (ord(code[2]) - 64)


def decode_manufacturer(value: int) -> str:
    return "".join(chr(((value >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


def encode_id(ident: str) -> bytes:
    """Eight BCD digits, least significant byte first; 'F' (any case) is the wildcard nibble."""
    if len(ident) != 8 or any(ch not in "0123456789Ff" for ch in ident):
        raise ValueError(f"secondary id must be 8 digits (F = wildcard), got {ident!r}")
    return int(ident, 16).to_bytes(4, "little")


def decode_id(raw: bytes) -> str:
    """Print the id the way meters are labelled: the BCD nibbles, most significant first."""
    return f"{int.from_bytes(raw, 'little'):08X}"


def secondary_address(
    ident: str,
    manufacturer: str | None = None,
    version: int | None = None,
    medium: int | None = None,
) -> bytes:
    """The 8-byte secondary address; None means wildcard (0xFFFF / 0xFF) for that field."""
    man = 0xFFFF if manufacturer is None else encode_manufacturer(manufacturer)
    ver = 0xFF if version is None else version
    med = 0xFF if medium is None else medium
    return encode_id(ident) + man.to_bytes(2, "little") + bytes((ver & 0xFF, med & 0xFF))


def select_secondary(
    ident: str,
    manufacturer: str | None = None,
    version: int | None = None,
    medium: int | None = None,
    fcb: bool = False,
) -> bytes:
    """SND_UD to 0xFD with CI 0x52: the matching slave answers E5 and becomes 'selected'."""
    mask = secondary_address(ident, manufacturer, version, medium)
    return encode_long(C_SND_UD | (FCB if fcb else 0), ADDR_NETWORK_LAYER, CI_SELECT, mask)


def secondary_matches(mask: bytes, address: bytes) -> bool:
    """True when an 8-byte selection mask matches an 8-byte secondary address.

    Id nibbles 0xF match any digit; manufacturer 0xFFFF, version 0xFF, medium 0xFF match anything.
    """
    if len(mask) != 8 or len(address) != 8:
        return False
    for m, v in zip(mask[:4], address[:4]):
        if (m & 0x0F) != 0x0F and (m & 0x0F) != (v & 0x0F):
            return False
        if (m & 0xF0) != 0xF0 and (m & 0xF0) != (v & 0xF0):
            return False
    if mask[4:6] != b"\xff\xff" and mask[4:6] != address[4:6]:
        return False
    if mask[6] != 0xFF and mask[6] != address[6]:
        return False
    return mask[7] == 0xFF or mask[7] == address[7]


# --------------------------------------------------------------------------- parse


def parse_frame(data: bytes) -> Frame:
    """Parse exactly one frame; anything else (extra bytes, bad checksum, ...) raises."""
    if not data:
        raise MBusDecodeError("empty frame")
    start = data[0]
    if start == ACK:
        if len(data) != 1:
            raise MBusDecodeError(f"{len(data) - 1} bytes after ACK")
        return Ack()
    if start == START_SHORT:
        if len(data) != 5:
            raise MBusDecodeError(f"short frame must be 5 bytes, got {len(data)}")
        if data[4] != STOP:
            raise MBusDecodeError(f"short frame stop byte 0x{data[4]:02X}, expected 0x16")
        if checksum(data[1:3]) != data[3]:
            raise MBusDecodeError(
                f"short frame checksum 0x{data[3]:02X}, computed 0x{checksum(data[1:3]):02X}"
            )
        return ShortFrame(data[1], data[2])
    if start == START_LONG:
        if len(data) < 9:
            raise MBusDecodeError(f"long frame too short ({len(data)} bytes)")
        length = data[1]
        if data[2] != length:
            raise MBusDecodeError(
                f"long frame length bytes differ (0x{length:02X}, 0x{data[2]:02X})"
            )
        if data[3] != START_LONG:
            raise MBusDecodeError(f"second start byte 0x{data[3]:02X}, expected 0x68")
        if length < 3:
            raise MBusDecodeError(f"long frame length {length} below 3")
        if len(data) != length + 6:
            raise MBusDecodeError(
                f"long frame L={length} needs {length + 6} bytes, got {len(data)}"
            )
        if data[-1] != STOP:
            raise MBusDecodeError(f"long frame stop byte 0x{data[-1]:02X}, expected 0x16")
        body = data[4 : 4 + length]
        if checksum(body) != data[-2]:
            raise MBusDecodeError(
                f"long frame checksum 0x{data[-2]:02X}, computed 0x{checksum(body):02X}"
            )
        return LongFrame(body[0], body[1], body[2], bytes(body[3:]))
    raise MBusDecodeError(f"unknown start byte 0x{start:02X}")


class Extracted(NamedTuple):
    """What `extract_frame` found at the head of a receive buffer."""

    frame: bytes | None  # a complete, valid frame, or None when more bytes are needed
    consumed: int  # bytes to drop from the head of the buffer (garbage + frame)
    garbage: int  # of those, bytes that were noise, collisions or broken frames


def extract_frame(buf: bytes | bytearray) -> Extracted:
    """Find the first valid frame in a byte stream, skipping noise.

    A long frame whose header is sound but whose checksum or stop byte is wrong is dropped as a
    whole: scanning inside it could mistake a data byte 0xE5 for an ACK.  The loop advances at
    least one byte per turn, so it ends within len(buf) turns.
    """
    i = 0
    n = len(buf)
    while i < n:
        start = buf[i]
        if start == ACK:
            return Extracted(bytes((ACK,)), i + 1, i)
        if start == START_SHORT:
            if n - i < 5:
                return Extracted(None, i, i)
            if buf[i + 4] == STOP and (buf[i + 1] + buf[i + 2]) & 0xFF == buf[i + 3]:
                return Extracted(bytes(buf[i : i + 5]), i + 5, i)
            i += 1
            continue
        if start == START_LONG:
            if n - i < 4:
                return Extracted(None, i, i)
            length = buf[i + 1]
            if buf[i + 2] != length or buf[i + 3] != START_LONG or length < 3:
                i += 1
                continue
            end = i + length + 6
            if n < end:
                return Extracted(None, i, i)
            body = buf[i + 4 : i + 4 + length]
            if buf[end - 1] == STOP and checksum(body) == buf[end - 2]:
                return Extracted(bytes(buf[i:end]), end, i)
            i = end
            continue
        i += 1
    return Extracted(None, n, n)
