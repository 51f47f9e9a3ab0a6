"""Local wall-clock time for rules that speak in nights and days (leak, consumption).

A night window is the building's local time, so the engine passes the site's time zone
(`tz=None` means the gateway's system zone). Everything is computed from the `now` given.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_window(text: object) -> tuple[int, int]:
    """'01:00-05:00' -> (60, 300) minutes after midnight; ValueError when it is not a window."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a time window; write it HH:MM-HH:MM, e.g. 01:00-05:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"{text!r} is not a time window: hours go 00-23, minutes 00-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"{text!r} is not a window: it starts where it ends")
    return start, end


def local_date(now: float, tz: tzinfo | None) -> date:
    return datetime.fromtimestamp(now, tz).date()


def at(day: date, minutes: int, tz: tzinfo | None) -> float:
    """Epoch seconds of local `day` at `minutes` after midnight (a naive datetime = system zone)."""
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz).timestamp()


def day_bounds(now: float, tz: tzinfo | None) -> tuple[date, float, float]:
    day = local_date(now, tz)
    return day, at(day, 0, tz), at(day + timedelta(days=1), 0, tz)


def window_at(now: float, window: tuple[int, int], tz: tzinfo | None) -> tuple[float, float] | None:
    """(start, end) epoch of the window occurrence containing `now`, or None outside it."""
    start, end = window
    moment = datetime.fromtimestamp(now, tz)
    minutes = moment.hour * 60 + moment.minute
    today = moment.date()
    if start < end:
        if start <= minutes < end:
            return at(today, start, tz), at(today, end, tz)
        return None
    # Crosses midnight (22:00-06:00): the evening part started today, the morning part yesterday.
    if minutes >= start:
        return at(today, start, tz), at(today + timedelta(days=1), end, tz)
    if minutes < end:
        return at(today - timedelta(days=1), start, tz), at(today, end, tz)
    return None
