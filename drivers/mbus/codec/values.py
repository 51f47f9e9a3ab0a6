"""Reading the frame safely, and the EN 13757-3 data types (BCD, type F/G/I dates, text).

Every read goes through `Cursor`, which refuses to pass the end of the frame, so a malformed
telegram ends in `MBusDecodeError` and every loop is bounded by the frame length.
"""

from __future__ import annotations

import math
from fractions import Fraction

from drivers.mbus import units
from drivers.mbus.codec.model import Value
from drivers.mbus.frames import MBusDecodeError


class Cursor:
    """Reads forward through the user data and refuses to run past its end."""

    __slots__ = ("base", "data", "pos")

    def __init__(self, data: bytes, base: int = 0) -> None:
        self.data = data
        self.pos = 0
        self.base = base  # offset of data[0] in the frame, so messages point into the hex dump

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise MBusDecodeError(f"premature end of data reading {what} at offset {self.offset}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise MBusDecodeError(
                f"premature end of data: {what} needs {count} bytes at offset {self.offset}, "
                f"{self.remaining} left"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def bcd(raw: bytes) -> int | str:
    """Type A: packed BCD, LSB first.  A top nibble 0xF marks a negative value.

    Other hex nibbles are how meters flag an invalid or error reading; that is a fact about the
    value, not a broken frame, so it comes back as the hex digits instead of raising.
    """
    digits = raw[::-1].hex().upper()
    negative = False
    if digits and digits[0] == "F":
        negative = True
        digits = digits[1:]
    if not digits.isdigit():
        return raw[::-1].hex().upper() if not negative else "F" + digits
    value = int(digits) if digits else 0
    return -value if negative else value


def print_id(raw: bytes) -> str:
    # As libmbus and meter labels print it: the BCD nibbles read as hex, no leading zeros.
    return f"{int.from_bytes(raw, 'little'):X}"


def hex_bytes(raw: bytes) -> str:
    return " ".join(f"{b:02X}" for b in raw)


def latin_text(raw: bytes) -> str:
    # Strings are sent last character first (the application layer is LSB first).
    return raw[::-1].decode("latin-1")


def _year(two_digits: int, hundreds: int) -> int:
    # Meters that do not fill the hundred-year bits mean 20xx for small years.
    if hundreds == 0 and two_digits <= 80:
        return 2000 + two_digits
    return 1900 + 100 * hundreds + two_digits


def point_in_time(raw: bytes) -> str | None:
    """Type G (2 bytes), F (4 bytes) and I (6 bytes) points in time, as ISO 8601 local time.

    M-Bus meters keep local (legal) time without a zone, so no offset is appended.  A point the
    meter marks invalid (IV bit) or that is no calendar date (month 0, day 0: "not set") is None.
    """
    if len(raw) == 2:
        day = raw[0] & 0x1F
        month = raw[1] & 0x0F
        year = _year(((raw[0] & 0xE0) >> 5) | ((raw[1] & 0xF0) >> 1), 0)
        if not (1 <= month <= 12 and day >= 1):
            return None
        return f"{year:04d}-{month:02d}-{day:02d}"
    if len(raw) == 4:
        invalid = bool(raw[0] & 0x80)
        second = 0
        minute = raw[0] & 0x3F
        hour = raw[1] & 0x1F
        hundreds = (raw[1] & 0x60) >> 5
        tail = raw[2:4]
    elif len(raw) == 6:
        invalid = bool(raw[1] & 0x80)
        second = raw[0] & 0x3F
        minute = raw[1] & 0x3F
        hour = raw[2] & 0x1F
        hundreds = 0
        tail = raw[3:5]
    else:
        return None
    day = tail[0] & 0x1F
    month = tail[1] & 0x0F
    year = _year(((tail[0] & 0xE0) >> 5) | ((tail[1] & 0xF0) >> 1), hundreds)
    if invalid or not (1 <= month <= 12 and day >= 1):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


def scale_value(raw: int | float, info: units.ValueInfo, correction: Fraction,
                add: Fraction) -> Value:
    """raw * 10**exponent * factor * correction + offset, exactly, then one rounding to float.

    Integers stay integers when every step is integral, so a J counter stays an exact int.
    """
    if isinstance(raw, float) and not math.isfinite(raw):
        return raw
    scaled = Fraction(raw) * Fraction(10) ** info.exponent * info.factor * correction
    scaled += add * Fraction(10) ** info.exponent * info.factor + info.offset
    exact_int = (
        isinstance(raw, int)
        and info.exponent >= 0
        and info.factor.denominator == 1
        and correction.denominator == 1
        and add.denominator == 1
        and info.offset == 0
    )
    if exact_int:
        return int(scaled)
    return float(scaled)
