"""The data records: DIF [DIFE x0..10] VIF [VIFE x0..10] data, each into a Record.

DIF gives the data type and length, the function (instantaneous, max, min, during error) and the
low storage bit; DIFEs add storage, tariff and subunit bits; VIF/VIFE give quantity and decade.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from drivers.mbus import profile, units
from drivers.mbus.codec.model import MAX_DIFE, MAX_VIFE, Function, Record, Value
from drivers.mbus.codec.values import (
    Cursor,
    bcd,
    hex_bytes,
    latin_text,
    point_in_time,
    scale_value,
)
from drivers.mbus.frames import MBusDecodeError
from drivers.mbus.vife import (
    COMBINABLE_EXTENSION,
    combinable_vife,
    extended_combinable_vife,
    per_second_unit,
)

_FUNCTIONS: tuple[Function, ...] = ("instantaneous", "maximum", "minimum", "error")
# DIF data field -> length in bytes (None: variable length; 0x0F: special function).
_DATA_LENGTH = {
    0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8,
    0x8: 0, 0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6,
}
_BCD_FIELDS = {0x9, 0xA, 0xB, 0xC, 0xE}
_DATE_FIELDS = {0x2, 0x4, 0x6}  # 2, 4 and 6 bytes: types G, F and I
_LVAR_BINARY = {0xF0: 16, 0xF1: 20, 0xF2: 24, 0xF3: 28, 0xF4: 32, 0xF5: 48, 0xF6: 64}


def _error_code(value: Value, dif: int) -> bool:
    """A BCD field that came back as hex digits: the meter's error code in place of a number.

    It keeps the VIF's unit (the record still says what it measures); `is_error_code` tells it
    apart from a number.
    """
    return isinstance(value, str) and dif & 0x0F in _BCD_FIELDS


def is_error_code(record: Record) -> bool:
    """True when a record in a numeric unit holds the meter's error digits instead of a value."""
    return isinstance(record.value, str) and record.unit is not None


@dataclass(slots=True)
class _Vib:
    info: units.ValueInfo
    modifiers: list[str]
    correction: Fraction
    add: Fraction
    raw: bytes


def _read_vib(cur: Cursor) -> _Vib:
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
        text = latin_text(cur.take(length, "plain-text VIF"))
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
        if vife & 0x7F == COMBINABLE_EXTENSION and extended:
            vife = next_vife()  # a code of the extension table (phase, quadrant), not table 15
            extended = bool(vife & 0x80)
            modifiers.append(extended_combinable_vife(vife & 0x7F).name)
            continue
        comb = combinable_vife(vife & 0x7F)
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
            per_second = per_second_unit(info.unit) if comb.seconds_per else None
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


def _read_value(cur: Cursor, data_field: int, little: bool) -> tuple[Value, bytes]:
    """Read the data of one record by its DIF data field code; returns (value, raw bytes)."""
    if data_field == 0xD:
        lvar = cur.byte("LVAR")
        if lvar <= 0xBF:
            raw = cur.take(lvar, "LVAR text")
            return latin_text(raw), raw
        if 0xC0 <= lvar <= 0xC9 or 0xD0 <= lvar <= 0xD9:
            # BCD with (LVAR & 0x0F) * 2 digits, 0xDx is the negative form.
            raw = cur.take(lvar & 0x0F, "LVAR BCD")
            ordered = raw if little else raw[::-1]
            value = bcd(ordered)
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
            return hex_bytes(ordered[::-1]), ordered
        raise MBusDecodeError(f"reserved LVAR 0x{lvar:02X} at offset {cur.offset - 1}")
    length = _DATA_LENGTH[data_field]
    raw = cur.take(length, "record data")
    if length == 0:
        return None, raw
    ordered = raw if little else raw[::-1]
    if data_field in _BCD_FIELDS:
        return bcd(ordered), ordered
    if data_field == 0x5:
        return struct.unpack("<f", ordered)[0], ordered
    if length >= 2 and ordered == b"\xff" * length:
        # All ones is how radio meters fill a value they do not have (a history slot not yet
        # reached, a sensor absent): no value, not -1 of the unit.
        return None, ordered
    return int.from_bytes(ordered, "little", signed=True), ordered


def decode_records_at(cur: Cursor, little: bool) -> tuple[list[Record], bool]:
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
            records.append(Record(hex_bytes(cur.rest()), None, "manufacturer_data",
                                  dib=bytes((dif,))))
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
            value = point_in_time(raw)  # types G/F/I are bit fields in an integer-sized data field
        elif isinstance(value, (int, float)):
            value = scale_value(value, info, vib.correction, vib.add)
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
        return scale_value(element, info, vib.correction, vib.add)  # type: ignore[return-value]

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
    return decode_records_at(Cursor(data, base), True)
