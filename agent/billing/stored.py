"""A meter's own stored values (M-Bus/OMS storage numbers with their date records), as the
boundary indexes they are.

A meter stores its index on its set day and at each month end, with the date it stored it: a
type G date (a day: the value is the index at the start of that day, 00:00 local) or a type F
date-time (the meter's own minute: the value is the index of the local midnight within
`max_offset` of it, with that offset). This is the most trusted provenance (`src: meter`): the
meter's register, read by the meter at the meter's time, not a gateway estimate.

Pure: `collect` turns one poll's point values into `Stored` values by boundary date and says
what is wrong with the others (no valid date, another unit than the index), so that the caller
reports it instead of skipping silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from agent.billing import boundaries
from agent.billing.meters import MeterSpec
from agent.sdk.models import PointValue, Quality


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored value of the index, placed on the boundary it is the index of."""

    day: str  # the local date of the midnight it is the index of (ISO)
    instant: float  # that midnight
    meter_date: str  # the date the meter stored with it (ISO)
    meter_time: str | None  # its time, when the meter sent a date-time ("23:59:00")
    offset: float  # seconds from the midnight to the meter's instant (0 for a date)
    digits: str
    scale: str
    unit: str | None
    point: str  # the value point it came from

    @property
    def count(self) -> Decimal:
        return Decimal(self.digits)


@dataclass
class Found:
    values: dict[str, Stored]  # by `day`
    bad_dates: list[tuple[str, str | None]]  # (date point, problem or None when fine)
    other_unit: list[dict[str, Any]]  # stored values in another unit or scale than the index


def collect(spec: MeterSpec, values: dict[str, PointValue], tz: ZoneInfo, max_offset: float,
            current: tuple[str, str | None] | None) -> Found:
    """The stored values of the index in `values`. `current` is the (scale, unit) of the index
    as the meter sends it now; a stored value in another one is not used (a different count
    would be read as consumption) and is listed in `other_unit`."""
    found = Found({}, [], [])
    for value_name, date_name in spec.stored_pairs(set(values)):
        pv = values.get(value_name)
        if pv is None or pv.quality is Quality.BAD or not number(pv.value):
            continue
        when = values.get(date_name)
        text = when.value if when is not None and when.quality is not Quality.BAD else None
        meter_day, meter_time = _split(text)
        found.bad_dates.append((date_name, None if meter_day else
                                f"stored value {value_name} has no valid date"))
        if meter_day is None:
            continue
        digits, scale, unit = pv.raw or (digits_of(pv.value), "1", spec.unit or pv.unit)
        if current is not None and (scale, unit) != current:
            found.other_unit.append({"point": value_name, "meter_date": meter_day.isoformat(),
                                     "stored": {"scale": scale, "unit": unit},
                                     "index": {"scale": current[0], "unit": current[1]}})
            continue
        placed = _boundary(meter_day, meter_time, tz, max_offset)
        if placed is None:
            continue  # a date-time away from any midnight: not a boundary index
        day, instant, offset = placed
        found.values.setdefault(day.isoformat(), Stored(
            day.isoformat(), instant, meter_day.isoformat(),
            meter_time.time().isoformat() if meter_time else None, offset, digits, scale, unit,
            value_name))
    return found


def _split(text: Any) -> tuple[date | None, datetime | None]:
    """`2026-11-01` -> (date, None); `2026-11-30T23:59:00` -> (date, local naive date-time)."""
    if not isinstance(text, str):
        return None, None
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return None, None
    if len(text) <= 10:
        return day, None
    try:
        return day, datetime.fromisoformat(text)
    except ValueError:
        return None, None


def _boundary(day: date, at: datetime | None, tz: ZoneInfo,
              max_offset: float) -> tuple[date, float, float] | None:
    """(boundary date, its instant, offset of the meter's instant from it)."""
    if at is None:
        return day, boundaries.midnight(day, tz), 0.0
    instant = at.replace(tzinfo=tz).timestamp()  # the meter keeps local legal time
    best = None
    for candidate in (day, day + timedelta(days=1)):
        midnight = boundaries.midnight(candidate, tz)
        offset = instant - midnight
        if abs(offset) <= max_offset and (best is None or abs(offset) < abs(best[2])):
            best = (candidate, midnight, offset)
    return best


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def digits_of(value: Any) -> str:
    return f"{Decimal(repr(value)):f}" if isinstance(value, float) else str(value)
