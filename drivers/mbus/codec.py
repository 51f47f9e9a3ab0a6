"""M-Bus application layer (EN 13757-3): decode an RSP_UD frame into a Telegram of records.

The variable data structure is a 12-byte header (CI 0x72) followed by data records:

    DIF [DIFE x0..10] VIF [VIFE x0..10] data

DIF gives the data type and length, the function (instantaneous, max, min, during error) and the
low storage bit; DIFEs add storage, tariff and subunit bits; VIF/VIFE give quantity and decade.
Values leave this module in SenML primary units (J, m3, W, m3/s, Cel, K, s, V, A, kg ...).

Every read goes through `_Cursor`, which refuses to pass the end of the frame, so a malformed
telegram ends in `MBusDecodeError` and every loop is bounded by the frame length.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from drivers.mbus import profile, units
from drivers.mbus.frames import (
    C_RSP_MASK,
    C_RSP_UD,
    LongFrame,
    MBusDecodeError,
    decode_manufacturer,
    parse_frame,
)

__all__ = [
    "MBusDecodeError",
    "Record",
    "Telegram",
    "decode_frame",
    "decode_hex",
    "decode_hex_file",
    "decode_records",
    "decode_user_data",
    "main_decode",
    "telegram_to_json",
]

Function = Literal["instantaneous", "maximum", "minimum", "error"]
Value = int | float | str | None

MAX_DIFE = 10  # EN 13757-3 limits each chain to ten extensions
MAX_VIFE = 10

CI_APPLICATION_ERROR = 0x70
CI_ALARM = 0x71
CI_VARIABLE_LONG = 0x72  # 12-byte header, multi-byte fields LSB first
CI_FIXED = 0x73
CI_VARIABLE_LONG_MSB = 0x76
CI_FIXED_MSB = 0x77
CI_VARIABLE_NONE = 0x78  # no header
CI_VARIABLE_SHORT = 0x7A  # 4-byte header: access number, status, signature

APPLICATION_ERRORS = {
    0: "unspecified error",
    1: "unimplemented CI field",
    2: "buffer too long, truncated",
    3: "too many records",
    4: "premature end of record",
    5: "more than 10 DIFEs",
    6: "more than 10 VIFEs",
    8: "application too busy for handling readout request",
    9: "too many readouts",
}

_FUNCTIONS: tuple[Function, ...] = ("instantaneous", "maximum", "minimum", "error")
# DIF data field -> length in bytes (None: variable length; 0x0F: special function).
_DATA_LENGTH = {
    0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8,
    0x8: 0, 0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6,
}
_BCD_FIELDS = {0x9, 0xA, 0xB, 0xC, 0xE}
_DATE_FIELDS = {0x2, 0x4, 0x6}  # 2, 4 and 6 bytes: types G, F and I
_LVAR_BINARY = {0xF0: 16, 0xF1: 20, 0xF2: 24, 0xF3: 28, 0xF4: 32, 0xF5: 48, 0xF6: 64}


@dataclass(frozen=True, slots=True)
class Record:
    """One data record, its value already in a SenML unit (or a string for dates and raw data)."""

    value: Value
    unit: str | None
    quantity: str
    function: Function = "instantaneous"
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    # Not part of the JSON contract: what a driver needs to tell apart two records of the same
    # quantity (e.g. Itron's volume with a manufacturer-specific VIFE next to the plain one).
    modifiers: tuple[str, ...] = ()
    dib: bytes = b""
    vib: bytes = b""
    data: bytes = b""  # the data field as sent, LSB first: the meter's own digits (billing)


@dataclass(frozen=True, slots=True)
class Telegram:
    id: str
    manufacturer: str | None
    version: int | None
    medium: str | None
    access_number: int | None
    status: int | None
    records: list[Record] = field(default_factory=list)
    address: int = 0  # link-layer (primary) address of the answering slave
    ci: int = CI_VARIABLE_LONG
    medium_code: int | None = None
    signature: int = 0
    more_records_follow: bool = False  # DIF 0x1F: ask again with the FCB toggled


# --------------------------------------------------------------------------- cursor


class _Cursor:
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


# --------------------------------------------------------------------------- types


def _bcd(raw: bytes) -> int | str:
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


def _error_code(value: Value, dif: int) -> bool:
    """A BCD field that came back as hex digits: the meter's error code in place of a number.

    It keeps the VIF's unit (the record still says what it measures); `is_error_code` tells it
    apart from a number.
    """
    return isinstance(value, str) and dif & 0x0F in _BCD_FIELDS


def is_error_code(record: Record) -> bool:
    """True when a record in a numeric unit holds the meter's error digits instead of a value."""
    return isinstance(record.value, str) and record.unit is not None


def _print_id(raw: bytes) -> str:
    # As libmbus and meter labels print it: the BCD nibbles read as hex, no leading zeros.
    return f"{int.from_bytes(raw, 'little'):X}"


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02X}" for b in raw)


def _text(raw: bytes) -> str:
    # Strings are sent last character first (the application layer is LSB first).
    return raw[::-1].decode("latin-1")


def _year(two_digits: int, hundreds: int) -> int:
    # Meters that do not fill the hundred-year bits mean 20xx for small years.
    if hundreds == 0 and two_digits <= 80:
        return 2000 + two_digits
    return 1900 + 100 * hundreds + two_digits


def _date(raw: bytes) -> str | None:
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


def _scale(raw: int | float, info: units.ValueInfo, correction: Fraction, add: Fraction) -> Value:
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


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class _Vib:
    info: units.ValueInfo
    modifiers: list[str]
    correction: Fraction
    add: Fraction
    raw: bytes


def _read_vib(cur: _Cursor) -> _Vib:
    start = cur.pos
    vif = cur.byte("VIF")
    code = vif & 0x7F
    extended = bool(vif & 0x80)
    count = 0

    def next_vife() -> int:
        nonlocal count
        if count >= MAX_VIFE:
            raise MBusDecodeError(f"more than {MAX_VIFE} VIFEs at offset {cur.offset}")
        count += 1
        return cur.byte("VIFE")

    if vif in (0xFB, 0xFD):
        true_vif = next_vife()
        info = (units.fd_vif if vif == 0xFD else units.fb_vif)(true_vif & 0x7F)
        extended = bool(true_vif & 0x80)
    elif code == 0x7C:
        # Plain-text unit: length byte then the text, before any VIFE (as meters send it).
        length = cur.byte("plain-text VIF length")
        text = _text(cur.take(length, "plain-text VIF"))
        if text == "%RH":
            info = units.ValueInfo("relative_humidity", "%RH")
        else:
            info = units.ValueInfo(text, None)
    else:
        info = units.primary_vif(code)

    modifiers: list[str] = []
    correction = Fraction(1)
    add = Fraction(0)
    if code == 0x7F:
        # A manufacturer-specific VIF: its VIFEs are the manufacturer's too, read no meaning in.
        while extended:
            extended = bool(next_vife() & 0x80)
        return _Vib(info, modifiers, correction, add, bytes(cur.data[start : cur.pos]))
    while extended:
        vife = next_vife()
        extended = bool(vife & 0x80)
        if vife & 0x7F == units.COMBINABLE_EXTENSION and extended:
            vife = next_vife()  # a code of the extension table (phase, quadrant), not table 15
            extended = bool(vife & 0x80)
            modifiers.append(units.extended_combinable_vife(vife & 0x7F).name)
            continue
        comb = units.combinable_vife(vife & 0x7F)
        if comb.kind == "factor":
            correction *= Fraction(10) ** comb.power
        elif comb.kind == "offset":
            add += Fraction(10) ** comb.power
        elif comb.kind == "tag":
            modifiers.append(comb.name)
        elif comb.kind == "date":
            info = units.ValueInfo(f"{info.quantity}_{comb.name}", None, kind="date")
        elif comb.kind == "duration":
            info = units.ValueInfo(f"{info.quantity}_{comb.name}", "s", 0, comb.seconds)
        elif comb.kind == "count":
            info = units.ValueInfo(f"{info.quantity}_{comb.name}", None)
        elif comb.kind == "rate":
            # "Volume per hour" & co.: a per-time rate of a known unit is converted to its SenML
            # per-second unit (m3 -> m3/s, J -> W, kg -> kg/s); other rates ("per litre", "per
            # month", of a unit without a per-second form) keep the scale but have no unit.
            per_second = units.per_second_unit(info.unit) if comb.seconds_per else None
            factor = info.factor / comb.seconds_per if per_second else info.factor
            info = units.ValueInfo(
                f"{info.quantity}_{comb.name}", per_second, info.exponent, factor, info.offset
            )
        if comb.name == "manufacturer_specific":
            # "Next VIFEs and data of this block are manufacturer specific": walk the E bits
            # (still bounded by MAX_VIFE) without reading meaning into them.
            while extended:
                extended = bool(next_vife() & 0x80)
    return _Vib(info, modifiers, correction, add, bytes(cur.data[start : cur.pos]))


def _read_value(cur: _Cursor, data_field: int, little: bool) -> tuple[Value, bytes]:
    """Read the data of one record by its DIF data field code; returns (value, raw bytes)."""
    if data_field == 0xD:
        lvar = cur.byte("LVAR")
        if lvar <= 0xBF:
            raw = cur.take(lvar, "LVAR text")
            return _text(raw), raw
        if 0xC0 <= lvar <= 0xC9 or 0xD0 <= lvar <= 0xD9:
            # BCD with (LVAR & 0x0F) * 2 digits, 0xDx is the negative form.
            raw = cur.take(lvar & 0x0F, "LVAR BCD")
            ordered = raw if little else raw[::-1]
            value = _bcd(ordered)
            if lvar >= 0xD0 and isinstance(value, int):
                value = -value
            return value, ordered
        if 0xE0 <= lvar <= 0xF6:
            # Binary number: E0..EF -> 0..15 bytes, F0..F4 -> 4*(LVAR-0xEC) bytes, F5 48, F6 64.
            size = _LVAR_BINARY.get(lvar, lvar - 0xE0)
            raw = cur.take(size, "LVAR binary")
            ordered = raw if little else raw[::-1]
            if 0 < size <= 8:
                return int.from_bytes(ordered, "little", signed=False), ordered
            # Too wide for a meaningful number (keys, passwords): the hex, most significant first.
            return _hex(ordered[::-1]), ordered
        raise MBusDecodeError(f"reserved LVAR 0x{lvar:02X} at offset {cur.offset - 1}")
    length = _DATA_LENGTH[data_field]
    raw = cur.take(length, "record data")
    if length == 0:
        return None, raw
    ordered = raw if little else raw[::-1]
    if data_field in _BCD_FIELDS:
        return _bcd(ordered), ordered
    if data_field == 0x5:
        return struct.unpack("<f", ordered)[0], ordered
    if length >= 2 and ordered == b"\xff" * length:
        # All ones is how radio meters fill a value they do not have (a history slot not yet
        # reached, a sensor absent): no value, not -1 of the unit.
        return None, ordered
    return int.from_bytes(ordered, "little", signed=True), ordered


def _decode_records(cur: _Cursor, little: bool) -> tuple[list[Record], bool]:
    records: list[Record] = []
    more = False
    while cur.remaining > 0:
        dib_start = cur.pos
        dif = cur.byte("DIF")
        if dif == 0x2F:
            continue  # idle filler between records
        if dif in (0x0F, 0x1F):
            # Manufacturer-specific data to the end of the telegram, kept raw for the profile.
            more = dif == 0x1F
            records.append(Record(_hex(cur.rest()), None, "manufacturer_data", dib=bytes((dif,))))
            break
        if dif & 0x0F == 0x0F:
            raise MBusDecodeError(f"reserved special DIF 0x{dif:02X} at offset {cur.offset - 1}")
        function = _FUNCTIONS[(dif >> 4) & 0x03]
        storage = (dif >> 6) & 0x01
        tariff = 0
        subunit = 0
        extended = bool(dif & 0x80)
        count = 0
        while extended:
            if count >= MAX_DIFE:
                raise MBusDecodeError(f"more than {MAX_DIFE} DIFEs at offset {cur.offset}")
            dife = cur.byte("DIFE")
            storage |= (dife & 0x0F) << (1 + 4 * count)
            tariff |= ((dife >> 4) & 0x03) << (2 * count)
            subunit |= ((dife >> 6) & 0x01) << count
            extended = bool(dife & 0x80)
            count += 1
        dib = bytes(cur.data[dib_start : cur.pos])
        vib = _read_vib(cur)
        value, raw = _read_value(cur, dif & 0x0F, little)
        info = vib.info
        kind = profile.profile_kind(vib.raw) if dif & 0x0F == 0x0D else None
        if kind is not None and isinstance(value, str):
            records.extend(_profile_records(kind, raw, vib, records, dib, function, storage,
                                            tariff, subunit))
            continue
        if info.kind == "date" and dif & 0x0F in _DATE_FIELDS:
            value = _date(raw)  # types G/F/I are bit fields in an integer-sized data field
        elif isinstance(value, (int, float)):
            value = _scale(value, info, vib.correction, vib.add)
        unit = info.unit if isinstance(value, (int, float)) or _error_code(value, dif) else None
        records.append(
            Record(
                value=value,
                unit=unit,
                quantity=info.quantity,
                function=function,
                storage=storage,
                tariff=tariff,
                subunit=subunit,
                modifiers=tuple(vib.modifiers),
                dib=dib,
                vib=vib.raw,
                data=raw,
            )
        )
    return records, more


def _profile_records(kind: str, raw: bytes, vib: _Vib, before: list[Record], dib: bytes,
                     function: Function, storage: int, tariff: int,
                     subunit: int) -> list[Record]:
    """The elements of a compact profile record (drivers/mbus/profile.py) as records."""
    info = vib.info
    base_time = next((r.value for r in reversed(before) if r.storage == storage
                      and r.quantity in ("date", "date_time") and isinstance(r.value, str)), None)
    base_value = next((r.value for r in reversed(before) if r.storage == storage
                       and r.quantity == info.quantity and r.tariff == tariff
                       and r.subunit == subunit and not r.modifiers
                       and isinstance(r.value, (int, float))), None)

    def scale(element: int) -> float | int:
        return _scale(element, info, vib.correction, vib.add)  # type: ignore[return-value]

    out = []
    for number, value, when in profile.elements(kind, raw, base_time, base_value, scale):
        tags = (kind, f"element_{number}") + ((f"at_{when}",) if when else ())
        out.append(Record(value, info.unit, info.quantity, function, storage, tariff, subunit,
                          modifiers=tags, dib=dib, vib=vib.raw))
    return out


def decode_records(data: bytes, base: int = 0) -> tuple[list[Record], bool]:
    """The data records alone (LSB first), for a caller that read the header itself, as the
    wireless M-Bus decoder does after its link, ELL, AFL and TPL layers: (records, more follow).
    """
    return _decode_records(_Cursor(data, base), True)


# --------------------------------------------------------------------------- headers


def _fixed_structure(data: bytes, address: int, ci: int) -> Telegram:
    """The old fixed data structure: id, access, status, medium/units, two 4-byte counters."""
    if len(data) != 16:
        raise MBusDecodeError(f"fixed data structure must be 16 bytes, got {len(data)}")
    little = ci == CI_FIXED
    ordered = (lambda b: b) if little else (lambda b: b[::-1])
    ident = _print_id(ordered(data[0:4]))
    access, status = data[4], data[5]
    medium_unit = data[6:8] if little else data[6:8][::-1]
    medium_code = ((medium_unit[1] >> 6) << 2) | (medium_unit[0] >> 6)
    unit1 = medium_unit[0] & 0x3F
    unit2 = medium_unit[1] & 0x3F
    binary = bool(status & 0x01)  # status bit 0: counters binary, else BCD
    historic = bool(status & 0x02)  # status bit 1: counters are fixed-date (historic) values
    records = []
    for unit_code, raw in ((unit1, data[8:12]), (unit2, data[12:16])):
        storage = 1 if historic else 0
        if unit_code == units.FIXED_UNIT_HISTORIC:
            unit_code, storage = unit1, 1
        info = units.fixed_unit(unit_code)
        counter = ordered(raw)
        value: Value = int.from_bytes(counter, "little") if binary else _bcd(counter)
        if isinstance(value, int):
            value = _scale(value, info, Fraction(1), Fraction(0))
        # A BCD counter with A-F digits is an error code: it keeps the counter's unit.
        unit = info.unit if isinstance(value, (int, float, str)) else None
        records.append(Record(value, unit, info.quantity, storage=storage, vib=bytes((unit_code,))))
    return Telegram(
        id=ident,
        manufacturer=None,
        version=None,
        medium=units.FIXED_MEDIUM[medium_code],
        access_number=access,
        status=status,
        records=records,
        address=address,
        ci=ci,
        medium_code=medium_code,
    )


def decode_user_data(ci: int, data: bytes, address: int = 0, base: int = 0) -> Telegram:
    """Decode the application layer: CI field and the bytes after it.

    `base` is the offset of `data` in the frame (7 in a long frame), used in error messages.
    """
    if ci == CI_APPLICATION_ERROR:
        if not data:
            raise MBusDecodeError("meter reports an application error without an error code")
        text = APPLICATION_ERRORS.get(data[0], f"reserved error code {data[0]}")
        raise MBusDecodeError(f"meter reports application error {data[0]}: {text}")
    if ci in (CI_FIXED, CI_FIXED_MSB):
        return _fixed_structure(data, address, ci)
    if ci not in (CI_VARIABLE_LONG, CI_VARIABLE_LONG_MSB, CI_VARIABLE_NONE, CI_VARIABLE_SHORT):
        raise MBusDecodeError(f"unsupported CI field 0x{ci:02X}")
    little = ci != CI_VARIABLE_LONG_MSB
    cur = _Cursor(data, base)
    ident = ""
    manufacturer: str | None = None
    version: int | None = None
    medium_code: int | None = None
    access: int | None = None
    status: int | None = None
    signature = 0
    if ci in (CI_VARIABLE_LONG, CI_VARIABLE_LONG_MSB):
        if len(data) < 12:
            raise MBusDecodeError(f"variable data header needs 12 bytes, got {len(data)}")
        id_raw = cur.take(4, "id")
        man_raw = cur.take(2, "manufacturer")
        ident = _print_id(id_raw if little else id_raw[::-1])
        manufacturer = decode_manufacturer(int.from_bytes(man_raw, "little" if little else "big"))
        version = cur.byte("version")
        medium_code = cur.byte("medium")
    if ci != CI_VARIABLE_NONE:
        if cur.remaining < 4:
            raise MBusDecodeError(f"short header needs 4 bytes, got {cur.remaining}")
        access = cur.byte("access number")
        status = cur.byte("status")
        signature = int.from_bytes(cur.take(2, "signature"), "little" if little else "big")
    records, more = _decode_records(cur, little)
    return Telegram(
        id=ident,
        manufacturer=manufacturer,
        version=version,
        medium=None if medium_code is None else units.medium_name(medium_code),
        access_number=access,
        status=status,
        records=records,
        address=address,
        ci=ci,
        medium_code=medium_code,
        signature=signature,
        more_records_follow=more,
    )


def decode_frame(data: bytes) -> Telegram:
    """Decode one complete RSP_UD long frame (68 L L 68 C A CI ... CS 16)."""
    frame = parse_frame(bytes(data))
    if not isinstance(frame, LongFrame):
        raise MBusDecodeError(f"expected an RSP_UD long frame, got {type(frame).__name__}")
    if frame.c & C_RSP_MASK != C_RSP_UD:
        raise MBusDecodeError(f"C field 0x{frame.c:02X} is not RSP_UD")
    return decode_user_data(frame.ci, frame.data, frame.a, base=7)


def decode_hex(text: str) -> Telegram:
    """Decode a frame written as hex, with any whitespace between (or within) the bytes."""
    compact = "".join(text.split())
    try:
        data = bytes.fromhex(compact)
    except ValueError:
        raise MBusDecodeError("not hexadecimal text") from None
    return decode_frame(data)


def decode_hex_file(path: str | Path) -> Telegram:
    return decode_hex(Path(path).read_text(encoding="ascii", errors="replace"))


# --------------------------------------------------------------------------- output


def telegram_to_json(t: Telegram) -> dict[str, Any]:
    return {**header_to_json(t), "records": [record_to_json(r) for r in t.records]}


def header_to_json(t: Any) -> dict[str, Any]:
    """The meter's identity and the telegram's status, as JSON (wired and wireless telegrams)."""
    return {
        "id": t.id,
        "manufacturer": t.manufacturer,
        "version": t.version,
        "medium": t.medium,
        "access_number": t.access_number,
        "status": t.status,
    }


def record_to_json(r: Record) -> dict[str, Any]:
    """One decoded record as JSON (wired and wireless telegrams alike)."""
    return {
        "value": _json_value(r.value),
        "unit": r.unit,
        "quantity": r.quantity,
        "function": r.function,
        "storage": r.storage,
        "tariff": r.tariff,
        "subunit": r.subunit,
    }


def _json_value(value: Value) -> Value:
    # JSON has no NaN or infinity; a meter sending them as real32 gets null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format_value(value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _render_table(path: str, t: Telegram) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # A pipe gets rich's 80 columns by default, too narrow for a record table.
    console = Console(width=max(Console().width, 110))
    console.print(
        escape(path) + f"\nid {t.id}  manufacturer {t.manufacturer or '-'}  version "
        f"{t.version if t.version is not None else '-'}  medium {t.medium or '-'}  "
        f"access {t.access_number}  status 0x{(t.status or 0):02X}",
        highlight=False,
    )
    table = Table()
    for col in ("#", "quantity", "value", "unit", "function", "storage", "tariff", "subunit"):
        table.add_column(col, justify="right" if col in ("#", "value") else "left",
                         overflow="fold")
    for i, r in enumerate(t.records):
        extra = f" [{', '.join(r.modifiers)}]" if r.modifiers else ""
        # Meter texts and modifiers may hold brackets: escape them from rich's markup.
        cells = (r.quantity + extra, _format_value(r.value), r.unit or "", r.function)
        table.add_row(str(i), *map(escape, cells), str(r.storage), str(r.tariff), str(r.subunit))
    console.print(table)
    if t.more_records_follow:
        console.print("more records follow in the next telegram (toggle the FCB)")


def main_decode(path: str, as_json: bool) -> int:
    """`batigate mbus decode FILE.hex [--json]`: 0 on success, 1 with one line on stderr."""
    import json

    try:
        telegram = decode_hex_file(path)
    except MBusDecodeError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(telegram_to_json(telegram), ensure_ascii=False))
    else:
        _render_table(path, telegram)
    return 0
