"""From decoded records to point values: configured points pick records, or every record is named.

A configured point selects a record by what it is (quantity, storage, tariff, subunit, function)
or by its index in the read-out (all telegrams of one poll, in order, 0-based). A meter without
points publishes every record under a generated name:

    {quantity}[_max|_min|_err][_s{storage}][_t{tariff}][_u{subunit}][_{n}]

e.g. `volume`, `volume_s1` (due-date index), `energy_s12` (12th monthly index), `power_max`,
`volume_2` (a second record with the same key, such as Itron's manufacturer-specific volume).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from collections.abc import Iterable, Sequence
from typing import Protocol

from agent.sdk.models import PointValue, Quality
from drivers.mbus import units
from drivers.mbus.codec import Record, is_error_code
from drivers.mbus.vife import TIME_RATES, per_second_unit

_FUNCTION_SUFFIX = {"instantaneous": "", "maximum": "_max", "minimum": "_min", "error": "_err"}
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_MAX_BASE = 48  # leaves room for suffixes within the 63 characters of a point name


def _quantity_units() -> dict[str, str]:
    """Quantity -> SenML unit, read off the codec's own tables (only unambiguous ones)."""
    seen: dict[str, set[str | None]] = {}
    tables = (units.primary_vif, units.fd_vif, units.fb_vif)
    for code in range(0x80):
        for table in tables:
            info = table(code)
            seen.setdefault(info.quantity, set()).add(info.unit)
    plain = {quantity: unit for quantity, found in seen.items()
             if len(found) == 1 and (unit := next(iter(found))) is not None}
    # "Volume per hour" & co. (per-time VIFEs) arrive in the per-second SenML unit.
    rates = {f"{quantity}_{rate}": per_second for quantity, unit in plain.items()
             if (per_second := per_second_unit(unit)) is not None
             for rate in TIME_RATES}
    return {**plain, **rates}


QUANTITY_UNITS: dict[str, str] = _quantity_units()


class Selector(Protocol):
    quantity: str
    storage: int
    tariff: int
    subunit: int
    function: str


class PointLike(Protocol):
    name: str
    unit: str | None
    index: int | None

    @property
    def record(self) -> Selector | None: ...


def matches(record: Record, selector: Selector) -> bool:
    return (record.quantity == selector.quantity and record.storage == selector.storage
            and record.tariff == selector.tariff and record.subunit == selector.subunit
            and record.function == selector.function)


def find(records: Sequence[Record], selector: Selector) -> Record | None:
    """The first matching record without modifiers, else the first matching one.

    Plain records win because a manufacturer-specific or limit-tagged twin of the same quantity
    (Itron's `04 94 7F` volume) is rarely the one a technician means.
    """
    candidates = [r for r in records if matches(r, selector)]
    plain = [r for r in candidates if not r.modifiers]
    return (plain or candidates or [None])[0]


def value_of(name: str, record: Record | None, unit: str | None) -> PointValue:
    """A point's value from its record; BAD when missing, invalid or not in the expected unit."""
    if record is None or record.value is None:
        return PointValue(name, None, Quality.BAD)
    value = record.value
    if isinstance(value, float) and not math.isfinite(value) or is_error_code(record):
        # NaN, or the meter's A-F error digits in a numeric record: never a reading.
        return PointValue(name, None, Quality.BAD)
    # A unit that is not the configured one means the meter's layout is not what the config
    # says (or the meter flags the value invalid with A..F BCD digits): never publish it as m3.
    if unit is not None and record.unit != unit:
        return PointValue(name, None, Quality.BAD)
    return PointValue(name, value, raw=raw_of(record))


_BCD = {0x9, 0xA, 0xB, 0xC, 0xE}


def raw_of(record: Record) -> tuple[str, str, str] | None:
    """The meter's own number of an integer energy/volume/mass record: (digits as sent, decimal
    scale, the meter's unit), e.g. BCD 00152340 with VIF 0x13 -> ("00152340", "0.001", "m3").
    None for what has no exact reading back (VIF extensions, floats, flagged digits)."""
    if (not isinstance(record.value, int | float) or isinstance(record.value, bool)
            or len(record.vib) != 1 or not record.data or not record.dib
            or record.dib[0] & 0x0F in (0x5, 0xD)):  # float or variable length: no digits
        return None
    info = units.primary_vif(record.vib[0] & 0x7F)
    if info.unit == "J" and info.factor == 3600:
        unit = "Wh"
    elif info.unit in ("J", "m3", "kg") and info.factor == 1:
        unit = info.unit
    else:
        return None
    if record.dib[0] & 0x0F in _BCD:
        digits = record.data[::-1].hex()
        if not digits.isdigit():
            return None
    else:
        digits = str(int.from_bytes(record.data, "little", signed=True))
    return digits, f"{Decimal(10) ** info.exponent:f}", unit


def pick(points: Iterable[PointLike], records: Sequence[Record]) -> list[PointValue]:
    out: list[PointValue] = []
    for point in points:
        if point.index is not None:
            record = records[point.index] if point.index < len(records) else None
        else:
            assert point.record is not None  # the config allows exactly one of the two
            record = find(records, point.record)
        if record is None and getattr(point, "optional", False):
            continue  # a record this meter does not keep: nothing to report, nothing wrong
        out.append(value_of(point.name, record, point.unit))
    return out


def base_name(record: Record) -> str:
    text = _NOT_NAME.sub("_", record.quantity.lower()).strip("_")[:_MAX_BASE].rstrip("_")
    if not text or not text[0].isalpha():
        text = "r_" + text if text else "record"
    parts = [text, _FUNCTION_SUFFIX[record.function]]
    if record.storage:
        parts.append(f"_s{record.storage}")
    if record.tariff:
        parts.append(f"_t{record.tariff}")
    if record.subunit:
        parts.append(f"_u{record.subunit}")
    return "".join(parts)


def auto(records: Sequence[Record]) -> list[PointValue]:
    """Every record under a generated, stable name (the record's unit is its SenML unit)."""
    out: list[PointValue] = []
    used: dict[str, int] = {}
    for record in records:
        if record.quantity == "manufacturer_data" and not record.value:
            continue  # the bare DIF 0x1F that says "more telegrams follow"
        name = base_name(record)
        count = used.get(name, 0) + 1
        used[name] = count
        value = value_of(name if count == 1 else f"{name}_{count}", record, None)
        out.append(PointValue(value.name, value.value, value.quality, record.unit,
                              raw=value.raw))
    return out
