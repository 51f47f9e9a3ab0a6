"""Billing boundaries: every local midnight of the site's zone, and which of them start a month.

A boundary is an instant (epoch seconds). Local days are 23 or 25 hours long on the days the
clocks change, so boundaries are computed from calendar dates in the zone, never by adding 86400.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MAX_BOUNDARIES = 800  # one call never yields more (a gateway off for two years gets the last 800)


def midnight(day: date, tz: ZoneInfo) -> float:
    """The instant local `day` begins. A zone that skips midnight (a change at 00:00) begins the
    day at the first local time that exists, which the UTC round trip gives."""
    local = datetime(day.year, day.month, day.day, tzinfo=tz)
    return local.timestamp()


def local_date(t: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def between(after: float, upto: float, tz: ZoneInfo) -> list[tuple[float, date]]:
    """The boundaries b with after < b <= upto, oldest first, as (instant, local date it begins);
    at most MAX_BOUNDARIES (the newest ones)."""
    if upto <= after:
        return []
    first = local_date(after, tz) + timedelta(days=1)
    last = local_date(upto, tz)
    days = (last - first).days + 1
    start = first + timedelta(days=max(0, days - MAX_BOUNDARIES))
    out = []
    day = start
    while day <= last:
        instant = midnight(day, tz)
        if after < instant <= upto:
            out.append((instant, day))
        day += timedelta(days=1)
    return out


def is_month_start(day: date) -> bool:
    return day.day == 1


def previous_day(day: date) -> date:
    return day - timedelta(days=1)


def previous_month(day: date) -> date:
    """The first of the month before the month of `day`."""
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def iso(t: float, tz: ZoneInfo) -> str:
    """Local time with its offset, e.g. 2026-11-01T00:00:00+01:00."""
    return datetime.fromtimestamp(t, tz).isoformat()


def month_bounds(month: str, tz: ZoneInfo) -> tuple[date, date]:
    """`2026-11` -> (2026-11-01, 2026-12-01); ValueError with the rule otherwise."""
    try:
        start = datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"{month!r}: write the month as YYYY-MM, e.g. 2026-11") from None
    end = (start + timedelta(days=32)).replace(day=1)
    del tz
    return start, end
