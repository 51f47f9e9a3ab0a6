"""Compact profiles (EN 13757-3:2018 Annex F.2): a series of values in one LVAR record.

    DIF(data field 0xD) [DIFE..] VIF [VIFE..] VIFE 0x13|0x1E|0x1F  LVAR  spacing-control
    spacing-value  element element ...

VIFE 0x1F is a compact profile, 0x1E one with register numbers, 0x13 an inverse compact profile.
The spacing-control byte holds the size of one element in its low nibble (coded as the data field
of a DIF, variable length excluded), the spacing unit in bits 4-5 (seconds, minutes, hours, days)
and the increment mode in bits 6-7 (absolute values, positive increments, negative increments,
signed differences). Elements are preset with the "illegal" coding (type B/C all-ones or most
negative, BCD with hex digits) until the meter fills them; those stay out.

Element k (counting from 0) lies k + 1 spacings after the base time of the record's storage (the
date record with the same storage) for a compact profile, before it for an inverse one. Every
element becomes a Record of the profile's quantity, unit and storage, told apart by modifiers:
the profile kind, `element_<k+1>` and, when the base time and spacing give it, `at_<date>`.
Increments are turned into readings from the base value (the plain record of the same quantity,
storage, tariff and subunit); without one, increment profiles yield no element records.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date

PROFILE_VIFES = {0x13: "inverse_compact_profile", 0x1E: "compact_profile_register",
                 0x1F: "compact_profile"}
# DIF data field code -> (size in bytes, BCD); LVAR (0xD) and the special 0xF are not elements.
_ELEMENT = {0x1: (1, False), 0x2: (2, False), 0x3: (3, False), 0x4: (4, False),
            0x6: (6, False), 0x7: (8, False), 0x9: (1, True), 0xA: (2, True), 0xB: (3, True),
            0xC: (4, True), 0xE: (6, True)}
MONTH_SPACING = 0xFE  # spacing value in days meaning "one month" (checked on real HCA telegrams)
MAX_ELEMENTS = 64  # a profile longer than this is not read further (bounded work per record)


def profile_kind(vib_raw: bytes) -> str | None:
    """The profile kind when one of the VIFEs of this VIB is a compact-profile VIFE."""
    if not vib_raw or vib_raw[0] in (0xFB, 0xFD) or vib_raw[0] & 0x7F == 0x7F:
        return None  # extension tables and manufacturer VIFs: their VIFEs mean something else
    for vife in vib_raw[1:]:
        kind = PROFILE_VIFES.get(vife & 0x7F)
        if kind is not None:
            return kind
    return None


def _element(raw: bytes, bcd: bool) -> int | None:
    """One element as an integer, or None when it holds the "illegal" (not yet filled) coding."""
    if bcd:
        digits = raw[::-1].hex()
        return int(digits) if digits.isdigit() else None
    value = int.from_bytes(raw, "little", signed=True)
    if raw == b"\xff" * len(raw) or value == -(1 << (8 * len(raw) - 1)):
        return None
    return value


def _shift(base: date, days: int, months: int) -> date | None:
    """`base` moved by whole months (day kept, clamped to the month's end) and/or days."""
    try:
        if months:
            index = base.year * 12 + base.month - 1 + months
            year, month = divmod(index, 12)
            last = calendar.monthrange(year, month + 1)[1]
            return date(year, month + 1, min(base.day, last))
        return date.fromordinal(base.toordinal() + days)
    except (ValueError, OverflowError):
        return None


def elements(kind: str, payload: bytes, base_time: str | None, base_value: float | None,
             scale: Callable[[int], float | int]) -> list[tuple[int, float | int, str | None]]:
    """(k + 1, value scaled to SenML, ISO date or None) for every filled element.

    `payload` is the LVAR content (spacing control, spacing value, elements); `scale` turns a raw
    element into the profile's unit as the record decoder scales a plain value.
    """
    if len(payload) < 2 or payload[0] & 0x0F not in _ELEMENT:
        return []
    size, bcd = _ELEMENT[payload[0] & 0x0F]
    unit, mode, spacing = (payload[0] >> 4) & 0x03, payload[0] >> 6, payload[1]
    step_days = {3: spacing} if spacing not in (MONTH_SPACING, 0xFD, 0xFF) else {}
    start = None
    if base_time is not None:
        try:
            start = date.fromisoformat(base_time[:10])
        except ValueError:
            start = None
    direction = -1 if kind == "inverse_compact_profile" else 1
    out: list[tuple[int, float | int, str | None]] = []
    running = base_value
    count = min((len(payload) - 2) // size, MAX_ELEMENTS)  # a partial last element is not read
    for k in range(count):
        raw = _element(payload[2 + k * size : 2 + (k + 1) * size], bcd)
        if raw is None:
            continue
        if mode == 0:
            value: float | int = scale(raw)
        else:
            if running is None:
                return out
            # Increments are younger minus older: walking back in time subtracts them.
            delta = scale(abs(raw) if mode in (1, 2) else raw)
            delta = -delta if mode == 2 else delta
            running = running + direction * delta
            value = running
        when = None
        if start is not None and unit == 3 and spacing == MONTH_SPACING:
            shifted = _shift(start, 0, direction * (k + 1))
            when = shifted.isoformat() if shifted else None
        elif start is not None and unit == 3 and step_days:
            shifted = _shift(start, direction * (k + 1) * step_days[3], 0)
            when = shifted.isoformat() if shifted else None
        out.append((k + 1, value, when))
    return out
