"""Water rule types: `leak` (consumption that never stops) and `consumption` (abnormal day).

The point is a volume index (m3, what meters count) or a flow (m3/s): the reading's normalized
unit tells which, so a configured meter works either way. Flows from an index are the average
between two readings: a meter read every 15 minutes gives 15-minute flows.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from datetime import date
from typing import Any

from pydantic import Field, field_validator, model_validator

from agent.sdk.durations import Duration
from agent.sdk.models import Reading
from rules.builtin.base import (
    Flow,
    PointRuleBase,
    Rule,
    Volume,
    fmt,
    human_duration,
    number_of,
)
from rules.builtin.calendar import day_bounds, parse_window, window_at

_FLOW_UNITS = frozenset({"m3/s"})  # l/s, m3/h... are normalized to m3/s before the rules


class _Index:
    """Turns index readings into (flow) observations; a decreasing index is a reset."""

    def __init__(self) -> None:
        self.last: tuple[float, float] | None = None  # (time, index)

    def flow(self, index: float, now: float) -> float | None:
        last, self.last = self.last, (now, index)
        if last is None or now <= last[0] or index < last[1]:
            return None
        return (index - last[1]) / (now - last[0])


# ---- leak -------------------------------------------------------------------------------------

class LeakConfig(PointRuleBase):
    night: str | None = Field(None, description="local window, HH:MM-HH:MM, when the flow "
                                                "must fall to min_flow at least once")
    min_flow: Flow = Field(0.0, description="flow at or below which water is 'not running' "
                                            "(m3/s, or a quantity such as '5 l/h')")
    for_: Duration | None = Field(None, alias="for", description="longest time the flow may "
                                                                 "stay above min_flow (s)")

    @field_validator("night")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @model_validator(mode="after")
    def _mode(self) -> LeakConfig:
        if self.night is None and self.for_ is None:
            raise ValueError("give night (a window such as 01:00-05:00) and/or for (e.g. 24h)")
        return self


class LeakRule(Rule[LeakConfig]):
    """A leak is water that never stops.

    night: at the end of each night window in which at least one flow was observed and none fell
    to `min_flow`, the condition turns on; the first flow at or below `min_flow` inside a later
    window turns it off. for: the condition turns on at a reading that finds no flow at or below
    `min_flow` for `for`, and off at the first one that is.
    """

    config_model = LeakConfig

    def __init__(self, config: LeakConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.window = parse_window(config.night) if config.night else None
        self.min_flow = config.min_flow
        self.delay = config.for_
        self.threshold = self.min_flow
        self.unit = "m3/s"
        self.index = _Index()
        # night window under observation
        self.win: tuple[float, float] | None = None
        self.win_flows = 0
        self.win_low = False
        self.win_min: float | None = None
        self.night_on = False
        self.night_since: float | None = None
        # for: time of the last low flow (or of the first flow seen), and the minimum since
        self.low_at: float | None = None
        self.run_min: float | None = None
        self.for_on = False

    def on_reading(self, reading: Reading, now: float) -> None:
        x = number_of(reading)
        if x is None:
            return
        flow = x if reading.unit in _FLOW_UNITS else self.index.flow(x, now)
        if flow is not None:
            self._observe(flow, now)
        self.tick(now)

    def _observe(self, flow: float, now: float) -> None:
        low = flow <= self.min_flow
        if self.window is not None:
            if self.win is None or not self.win[0] <= now < self.win[1]:
                self._close_window(now)
                self.win = window_at(now, self.window, self.tz)
                self.win_flows, self.win_low, self.win_min = 0, False, None
            if self.win is not None:
                self.win_flows += 1
                self.win_low |= low
                self.win_min = flow if self.win_min is None else min(self.win_min, flow)
                if low and self.night_on:
                    self.night_on, self.value = False, flow  # water stopped at night: no leak
        if self.delay is not None:
            if low or self.low_at is None:
                if low and self.for_on:
                    self.value = flow
                self.low_at, self.run_min = now, flow
            else:
                self.run_min = min(self.run_min if self.run_min is not None else flow, flow)
            # judged at readings only: no data is no evidence of a leak
            self.for_on = not low and self.low_at + self.delay <= now
            if self.for_on:
                self.value = self.run_min

    def _close_window(self, now: float) -> None:
        if self.win is None or now < self.win[1]:
            return
        if self.win_flows and not self.win_low:
            self.night_on = True
            self.value, self.night_since = self.win_min, self.win[0]
        self.win = None

    def tick(self, now: float) -> None:
        self._close_window(now)
        on = self.night_on or self.for_on
        if on and not self.active:
            self.active = True
            self.since = self.night_since if self.night_on else self.low_at
        elif not on:
            self.active, self.since = False, None

    def next_deadline(self) -> float | None:
        return self.win[1] if self.win is not None else None

    def describe(self) -> str:
        if self.night_on:
            return (f"{self.ref}: water ran all night {self.config.night} (lowest flow "
                    f"{fmt(self.value, 'm3/s')}, limit {fmt(self.min_flow, 'm3/s')})")
        return (f"{self.ref}: flow above {fmt(self.min_flow, 'm3/s')} for "
                f"{human_duration(self.delay or 0)} (lowest {fmt(self.value, 'm3/s')})")

    def export_state(self) -> dict[str, Any]:
        return {"last": list(self.index.last) if self.index.last else None,
                "win": list(self.win) if self.win else None, "win_flows": self.win_flows,
                "win_low": self.win_low, "win_min": self.win_min, "night_on": self.night_on,
                "night_since": self.night_since, "low_at": self.low_at,
                "run_min": self.run_min, "for_on": self.for_on, "active": self.active,
                "since": self.since, "value": self.value}

    def restore_state(self, data: dict[str, Any]) -> None:
        last, win = data["last"], data["win"]
        self.index.last = (float(last[0]), float(last[1])) if last else None
        self.win = (float(win[0]), float(win[1])) if win else None
        self.win_flows, self.win_low = int(data["win_flows"]), bool(data["win_low"])
        self.win_min, self.night_on = data["win_min"], bool(data["night_on"])
        self.night_since, self.low_at = data["night_since"], data["low_at"]
        self.run_min, self.for_on = data["run_min"], bool(data["for_on"])
        self.active, self.since, self.value = bool(data["active"]), data["since"], data["value"]


# ---- consumption ------------------------------------------------------------------------------

class ConsumptionConfig(PointRuleBase):
    k: float = Field(description="a day is abnormal above k times the median of previous days")
    days: int = Field(7, ge=3, le=366, description="how many previous days make the median")
    min_volume: Volume = Field(0.0, description="never abnormal at or below this (m3, or "
                                                "a quantity such as '200 l')")

    @field_validator("k")
    @classmethod
    def _k(cls, value: float) -> float:
        if not 1 < value < math.inf:  # also refuses NaN
            raise ValueError(f"k ({value:g}) must be a number above 1: a day is abnormal when it "
                             "uses more than k times the usual")
        return value


class ConsumptionRule(Rule[ConsumptionConfig]):
    """A day's consumption (local days) above k x the median of the `days` previous full days.

    The condition turns on as soon as the running day exceeds the limit (it can only grow), and
    off at the end of the first normal day after. A day counts only if the index was read on it
    and on the day before (a partial day would drag the median down). The rule is silent until
    `days` full days are known.
    """

    config_model = ConsumptionConfig

    def __init__(self, config: ConsumptionConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.k, self.min_volume = config.k, config.min_volume
        self.unit = "m3"
        self.history: deque[float] = deque(maxlen=config.days)
        self.limit: float | None = None  # k x median, once history is full
        self.day: date | None = None
        self.day_start = self.day_end = 0.0
        self.base = self.last = 0.0  # index at the start of the day, latest index
        self.exact = False  # base is the previous day's last index
        self.seen = False  # the index was read during this day
        self.today_on = self.past_on = False
        self.past_since: float | None = None  # start of the last finished abnormal day

    def on_reading(self, reading: Reading, now: float) -> None:
        x = number_of(reading)
        if x is None:
            return
        if self.day is None:
            self._new_day(now, exact=False)
            self.base = self.last = x
        else:
            self.tick(now)
        if x < self.last:
            # A new meter (or a rollover) counting from 0: today's total goes on from x.
            self.base -= self.last
        self.last, self.seen = x, True
        used = self.last - self.base
        if self.exact and not self.today_on and self._abnormal(used):
            self.today_on = True
            self.value, self.threshold = round(used, 6), self.limit
        self._settle()

    def _abnormal(self, used: float) -> bool:
        return self.limit is not None and used > self.limit and used > self.min_volume

    def _new_day(self, now: float, *, exact: bool) -> None:
        self.day, self.day_start, self.day_end = day_bounds(now, self.tz)
        self.exact, self.seen, self.today_on = exact, False, False
        self.base = self.last

    def tick(self, now: float) -> None:
        if self.day is None or now < self.day_end:
            return
        used = self.last - self.base
        full = self.exact and self.seen
        self.past_on = full and self._abnormal(used)
        if full:  # what the day's end event (raise or clear) reports
            self.value, self.threshold = round(used, 6), self.limit
        if self.past_on:
            self.past_since = self.day_start
        if full:
            self.history.append(used)
            if len(self.history) == self.history.maxlen:
                self.limit = self.k * statistics.median(self.history)
        seen, previous_end = self.seen, self.day_end
        self._new_day(now, exact=False)
        # The new day is measurable only if it directly follows a day whose last index we have.
        self.exact = seen and self.day_start == previous_end
        self._settle()

    def _settle(self) -> None:
        on = self.today_on or self.past_on
        if on and not self.active:
            self.active = True
            self.since = self.day_start if self.today_on else self.past_since
        elif not on and self.active:
            self.active, self.since = False, None

    def next_deadline(self) -> float | None:
        return self.day_end if self.day is not None else None

    def describe(self) -> str:
        return (f"{self.ref}: {fmt(self.value, 'm3')} used in a day, above "
                f"{self.k:g} x the median of {len(self.history)} days "
                f"({fmt(self.threshold, 'm3')})")

    def export_state(self) -> dict[str, Any]:
        return {"history": list(self.history), "limit": self.limit,
                "day": self.day.isoformat() if self.day else None, "day_start": self.day_start,
                "day_end": self.day_end, "base": self.base, "last": self.last,
                "exact": self.exact, "seen": self.seen, "today_on": self.today_on,
                "past_on": self.past_on, "past_since": self.past_since, "active": self.active,
                "since": self.since, "value": self.value, "threshold": self.threshold}

    def restore_state(self, data: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(float(v) for v in data["history"])
        self.limit = data["limit"]
        self.day = date.fromisoformat(data["day"]) if data["day"] else None
        self.day_start, self.day_end = float(data["day_start"]), float(data["day_end"])
        self.base, self.last = float(data["base"]), float(data["last"])
        self.exact, self.seen = bool(data["exact"]), bool(data["seen"])
        self.today_on, self.past_on = bool(data["today_on"]), bool(data["past_on"])
        self.past_since, self.active = data["past_since"], bool(data["active"])
        self.since, self.value, self.threshold = data["since"], data["value"], data["threshold"]
