"""Rule types on a boolean point over time: `counter_rate` (pumps) and `availability` (lifts).

Both keep bounded rolling windows (deques), so one evaluation is O(1) amortized.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import Field, model_validator

from agent.sdk.durations import Duration
from agent.sdk.models import Reading
from rules.builtin.base import PointRuleBase, Rule, as_bool, human_duration, usable

# ---- counter_rate -----------------------------------------------------------------------------

class CounterRateConfig(PointRuleBase):
    max_starts: int | None = Field(None, ge=1, description="most starts allowed per window")
    window: Duration = Field(3600.0, description="sliding window for max_starts (s)")
    max_on: Duration | None = Field(None, description="longest acceptable run (s)")

    @model_validator(mode="after")
    def _something_to_watch(self) -> CounterRateConfig:
        if self.max_starts is None and self.max_on is None:
            raise ValueError("give max_starts (starts per window) and/or max_on (longest run)")
        if self.max_starts is None and "window" in self.model_fields_set:
            raise ValueError("window only counts starts: give max_starts with it")
        return self


class CounterRateRule(Rule[CounterRateConfig]):
    """A running signal (pump on) starting too often, or running too long.

    One alarm per rule: with both limits given it is on while either is exceeded (write two
    rules for two separate alarms). A first reading that says `on` is not a start: the rising
    edge was not seen.
    """

    config_model = CounterRateConfig

    def __init__(self, config: CounterRateConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.max_starts = config.max_starts
        self.window = config.window
        self.max_on = config.max_on
        # Only the last max_starts+1 starts matter: there are too many exactly when all of them
        # are still inside the window. That bounds memory whatever the flapping rate.
        self.starts: deque[float] = deque(maxlen=(self.max_starts or 0) + 1)
        self.running: bool | None = None
        self.on_since: float | None = None
        self.cause: str | None = None  # "starts" or "on"
        self.too_long = False  # running longer than max_on at the last evaluation

    def on_reading(self, reading: Reading, now: float) -> None:
        state = as_bool(reading.value) if usable(reading) else None
        if state is None:
            return
        if state and self.running is False:
            if self.max_starts is not None:
                self.starts.append(now)
            self.on_since = now
        elif state and self.running is None:
            self.on_since = now
        elif not state:
            if self.cause == "on" and self.on_since is not None:
                self.value = round(now - self.on_since, 3)  # the clear says how long it ran
            self.on_since = None
        self.running = state
        self.tick(now)

    def tick(self, now: float) -> None:
        starts = self.starts
        while starts and starts[0] + self.window <= now:
            starts.popleft()
        too_many = self.max_starts is not None and len(starts) > self.max_starts
        too_long = (self.max_on is not None and self.on_since is not None
                    and self.on_since + self.max_on <= now)
        self.too_long = too_long
        if too_many:
            self.cause, self.value, self.threshold, self.unit = (
                "starts", len(starts), self.max_starts, "count")
        elif too_long:
            assert self.on_since is not None
            self.cause, self.value, self.threshold, self.unit = (
                "on", round(now - self.on_since, 3), self.max_on, "s")
        if too_many or too_long:
            if not self.active:
                self.active = True
                self.since = starts[0] if too_many else self.on_since
        elif self.active:
            if self.cause == "starts":
                self.value = len(starts)
            self.active, self.since, self.cause = False, None, None

    def next_deadline(self) -> float | None:
        times = []
        if self.active and self.cause == "starts" and self.starts:
            times.append(self.starts[0] + self.window)  # the oldest start leaves the window
        if self.on_since is not None and self.max_on is not None and not self.too_long:
            times.append(self.on_since + self.max_on)
        return min(times) if times else None

    def describe(self) -> str:
        if self.cause == "starts":
            return (f"{self.ref}: {self.value} starts in {human_duration(self.window)} "
                    f"(limit {self.max_starts})")
        return (f"{self.ref}: running for {human_duration(float(self.value or 0))} "
                f"(limit {human_duration(self.max_on or 0)})")

    def export_state(self) -> dict[str, Any]:
        return {"starts": list(self.starts), "running": self.running, "on_since": self.on_since,
                "cause": self.cause, "active": self.active, "since": self.since,
                "value": self.value, "threshold": self.threshold, "unit": self.unit}

    def restore_state(self, data: dict[str, Any]) -> None:
        self.starts.clear()
        self.starts.extend(float(t) for t in data["starts"])
        self.running, self.on_since = data["running"], data["on_since"]
        self.cause, self.active, self.since = data["cause"], bool(data["active"]), data["since"]
        self.value, self.threshold, self.unit = data["value"], data["threshold"], data["unit"]


# ---- availability -----------------------------------------------------------------------------

_MAX_INTERVALS = 4096  # past that, the two oldest outages merge (exact total, coarser position)


class AvailabilityConfig(PointRuleBase):
    down_value: bool = Field(True, description="the point's value meaning out of service")
    max_down: Duration | None = Field(None, description="longest acceptable outage (s)")
    max_percent: float | None = Field(None, gt=0, lt=100,
                                      description="most time out of service over window (%)")
    window: Duration | None = Field(None, description="sliding window for max_percent (s)")

    @model_validator(mode="after")
    def _consistent(self) -> AvailabilityConfig:
        if self.max_down is None and self.max_percent is None:
            raise ValueError("give max_down (longest outage) and/or max_percent with window")
        if self.max_percent is not None and self.window is None:
            raise ValueError("max_percent needs a window, e.g. window: 30d")
        if self.window is not None and self.max_percent is None:
            raise ValueError("window only serves max_percent: give max_percent with it")
        return self


class AvailabilityRule(Rule[AvailabilityConfig]):
    """Out of service (lift) longer than `max_down`, or more than `max_percent` of `window`.

    The percentage is over the whole window: time before the first reading counts as in
    service, so a fresh install does not page on its first outage.
    """

    config_model = AvailabilityConfig

    def __init__(self, config: AvailabilityConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.down_value = config.down_value
        self.max_down = config.max_down
        self.window = config.window
        self.limit = (config.max_percent / 100 * config.window
                      if config.max_percent is not None and config.window else None)
        self.down_since: float | None = None
        # closed outages inside the window: (start, end, seconds down) - seconds < end - start
        # only for merged entries
        self.outages: deque[tuple[float, float, float]] = deque()
        self.closed_total = 0.0
        self.cause: str | None = None
        self.downtime = 0.0
        self.now = 0.0  # time of the last evaluation: next_deadline's bounds start from it

    def on_reading(self, reading: Reading, now: float) -> None:
        state = as_bool(reading.value) if usable(reading) else None
        if state is None:
            return
        down = state is self.down_value
        if down and self.down_since is None:
            self.down_since = now
        elif not down and self.down_since is not None:
            if self.cause == "down":
                self.value = round(now - self.down_since, 3)  # the clear says how long
            if self.window is not None and now > self.down_since:
                self._close(self.down_since, now)
            self.down_since = None
        self.tick(now)

    def _close(self, start: float, end: float) -> None:
        self.outages.append((start, end, end - start))
        self.closed_total += end - start
        if len(self.outages) > _MAX_INTERVALS:
            (s1, _, d1), (_, e2, d2) = self.outages.popleft(), self.outages.popleft()
            self.outages.appendleft((s1, e2, d1 + d2))

    def _downtime(self, now: float) -> float:
        assert self.window is not None
        low = now - self.window
        outages = self.outages
        while outages and outages[0][1] <= low:
            self.closed_total -= outages.popleft()[2]
        if not outages:
            self.closed_total = 0.0  # no float drift survives an empty window
        total = self.closed_total
        if outages and outages[0][0] < low:  # the oldest outage is partly out of the window
            start, end, seconds = outages[0]
            cut = low - start
            # exact for a real outage; proportional only for merged ones (see _close)
            total -= cut if seconds == end - start else seconds * cut / (end - start)
        if self.down_since is not None:
            total += now - max(self.down_since, low)
        return max(0.0, total)

    def tick(self, now: float) -> None:
        self.now = now
        too_long = (self.max_down is not None and self.down_since is not None
                    and self.down_since + self.max_down <= now)
        too_much = False
        if self.limit is not None:
            self.downtime = self._downtime(now)
            too_much = self.downtime > self.limit
        if too_long:
            self.cause, self.value, self.threshold, self.unit = (
                "down", round(now - self.down_since, 3), self.max_down, "s")  # type: ignore[operator]
        elif too_much:
            percent = 100 * self.downtime / self.window  # type: ignore[operator]
            self.cause, self.value, self.threshold, self.unit = (
                "percent", round(percent, 3), self.config.max_percent, "%")
        if too_long or too_much:
            if not self.active:
                self.active = True
                self.since = self.down_since if too_long else now
        elif self.active:
            if self.cause == "percent":
                self.value = round(100 * self.downtime / self.window, 3)  # type: ignore[operator]
            self.active, self.since, self.cause = False, None, None

    def next_deadline(self) -> float | None:
        times = []
        if self.max_down is not None and self.down_since is not None and self.cause != "down":
            times.append(self.down_since + self.max_down)
        if self.limit is not None:
            # Lower bounds: downtime grows at most 1 s per s while down, and shrinks at most
            # 1 s per s while up; tick() recomputes exactly, so an early wake-up is harmless.
            gap = self.limit - self.downtime
            if self.down_since is not None and gap >= 0 and self.cause != "percent":
                times.append(self.now + max(gap, 1e-3))
            elif self.down_since is None and self.cause == "percent":
                times.append(self.now + max(-gap, 1e-3))
        return min(times) if times else None

    def describe(self) -> str:
        if self.cause == "down":
            return (f"{self.ref}: out of service for {human_duration(float(self.value or 0))} "
                    f"(limit {human_duration(self.max_down or 0)})")
        return (f"{self.ref}: out of service {self.value}% of the last "
                f"{human_duration(self.window or 0)} (limit {self.config.max_percent}%)")

    def export_state(self) -> dict[str, Any]:
        return {"down_since": self.down_since, "outages": [list(o) for o in self.outages],
                "cause": self.cause, "active": self.active, "since": self.since,
                "value": self.value, "threshold": self.threshold, "unit": self.unit}

    def restore_state(self, data: dict[str, Any]) -> None:
        self.down_since = data["down_since"]
        self.outages = deque((float(s), float(e), float(d)) for s, e, d in data["outages"])
        self.closed_total = sum(d for _, _, d in self.outages)
        self.cause, self.active, self.since = data["cause"], bool(data["active"]), data["since"]
        self.value, self.threshold, self.unit = data["value"], data["threshold"], data["unit"]
