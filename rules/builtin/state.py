"""Rule types about how long something has been so: `held`, `stale`, `comm_lost`, `bad_quality`.

`value` / `threshold` in their events are durations in seconds (unit `s`): how long it has lasted
against the limit, so the backend can compare the two without knowing the rule type.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from agent.sdk.config import Ident
from agent.sdk.durations import Duration
from agent.sdk.models import DeviceState, Quality, Reading
from rules.builtin.base import (
    PointOrDevice,
    PointRuleBase,
    Rule,
    RuleBase,
    as_bool,
    as_number,
    fmt,
    human_duration,
    usable,
)


class _Timed(Rule[Any]):
    """A condition that becomes true once a situation has lasted `delay` seconds."""

    delay: float | None

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.delay = config.for_
        self.threshold = self.delay or 0.0
        self.unit = "s"
        self.started: float | None = None  # the situation began then; None = not in it

    def _enter(self, now: float) -> None:
        if self.started is None:
            self.started = now

    def _leave(self, now: float) -> None:
        if self.started is not None and self.active:
            self.value = round(now - self.started, 3)  # the clear says how long it lasted
        self.started = None
        self.active, self.since = False, None

    def tick(self, now: float) -> None:
        if self.started is None:
            return
        self.value = round(now - self.started, 3)
        if not self.active and (self.delay is None or self.started + self.delay <= now):
            self.active, self.since = True, self.started

    def next_deadline(self) -> float | None:
        if self.started is not None and not self.active and self.delay is not None:
            return self.started + self.delay
        return None

    def export_state(self) -> dict[str, Any]:
        return {"started": self.started, "active": self.active, "since": self.since,
                "value": self.value}

    def restore_state(self, data: dict[str, Any]) -> None:
        self.started, self.active = data["started"], bool(data["active"])
        self.since, self.value = data["since"], data["value"]
        if self.active and self.started is None:
            raise ValueError("active without a start time")


# ---- held -------------------------------------------------------------------------------------

class HeldConfig(PointRuleBase):
    value: StrictBool | StrictInt | StrictFloat | StrictStr = Field(
        description="the state that must not last (true = door open, 'fault', 3, ...)")
    for_: Duration = Field(alias="for", description="longest acceptable time in that state (s)")


class HeldRule(_Timed):
    """A point holding one state (door open, fan stopped) longer than `for`."""

    config_model = HeldConfig

    def __init__(self, config: HeldConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        target = config.value
        self.target = target
        # Compare like with like: a bool state matches 1/"on", a number matches 1.0.
        if isinstance(target, bool):
            self._matches = lambda v: as_bool(v) is target
        elif isinstance(target, int | float):
            self._matches = lambda v: as_number(v) == float(target)
        else:
            self._matches = lambda v: str(v) == target

    def on_reading(self, reading: Reading, now: float) -> None:
        if not usable(reading):
            return
        if self._matches(reading.value):
            self._enter(now)
            self.tick(now)
        else:
            self._leave(now)

    def describe(self) -> str:
        lasted = human_duration(float(self.value or 0))
        return (f"{self.ref} = {fmt(self.target)} for {lasted} "
                f"(limit {human_duration(self.delay or 0)})")


# ---- stale ------------------------------------------------------------------------------------

class StaleConfig(RuleBase):
    point: PointOrDevice = Field(description="dev/point, or dev/* for any point of the device")
    for_: Duration = Field(alias="for", description="longest acceptable silence (s)")

    def points(self) -> list[str]:
        return [self.point]


class StaleRule(_Timed):
    """No fresh value for `for`: fresh = good quality and a sample time newer than the last one.

    Comparing sample times means a driver re-sending a cached sample does not count as fresh.
    The silence is counted from the engine's first `now` too, so a point that never reports is
    caught; after a restart that count starts again (the agent's own downtime is not the
    device's), unless the alarm was already on.
    """

    config_model = StaleConfig

    def __init__(self, config: StaleConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.last_ts: dict[str, float] = {}

    def on_reading(self, reading: Reading, now: float) -> None:
        if reading.quality is Quality.GOOD and reading.value is not None:
            previous = self.last_ts.get(reading.name)
            if previous is None or reading.ts > previous:
                self.last_ts[reading.name] = reading.ts
                self._leave(now)
                self.started = now  # silence is counted from the last fresh value
                return
        self._enter(now)
        self.tick(now)

    def tick(self, now: float) -> None:
        self._enter(now)  # arm: nothing heard since the engine started
        super().tick(now)

    def describe(self) -> str:
        return f"{self.ref}: no fresh value for {human_duration(float(self.value or 0))}"

    def export_state(self) -> dict[str, Any]:
        data = super().export_state()
        if not self.active:
            data["started"] = None  # restart the count after a restart: see the class doc
        data["last_ts"] = dict(self.last_ts)
        return data

    def restore_state(self, data: dict[str, Any]) -> None:
        super().restore_state(data)
        self.last_ts = {str(k): float(v) for k, v in data["last_ts"].items()}


# ---- comm_lost --------------------------------------------------------------------------------

class CommLostConfig(RuleBase):
    device: Ident
    for_: Duration = Field(alias="for", description="how long the device may stay down (s)")

    def points(self) -> list[str]:
        return [f"{self.device}/*"]


class CommLostRule(_Timed):
    """The driver has reported the device `down` for longer than `for`."""

    config_model = CommLostConfig
    wants_device_state = True

    def watches(self) -> list[str]:
        return []  # device states only: readings would be wasted calls

    def on_device_state(self, device: str, state: DeviceState, now: float) -> None:
        if state is DeviceState.DOWN:
            self._enter(now)
            self.tick(now)
        elif state is DeviceState.OK:
            self._leave(now)
        # UNKNOWN (start-up, before the first poll) tells nothing either way.

    def describe(self) -> str:
        return f"{self.device}: no communication for {human_duration(float(self.value or 0))}"

    def export_state(self) -> dict[str, Any]:
        data = super().export_state()
        if not self.active:
            data["started"] = None  # the driver reports `down` again after a restart
        return data


# ---- bad_quality ------------------------------------------------------------------------------

class BadQualityConfig(RuleBase):
    point: PointOrDevice = Field(description="dev/point, or dev/* for any point of the device")
    for_: Duration | None = Field(None, alias="for", description="tolerated time (s)")
    uncertain: bool = Field(False, description="count uncertain quality as bad too")

    def points(self) -> list[str]:
        return [self.point]


class BadQualityRule(_Timed):
    """Readings of bad quality (or without a value) for longer than `for` on the point(s)."""

    config_model = BadQualityConfig

    def __init__(self, config: BadQualityConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.bad_since: dict[str, float] = {}  # insertion order = time order: first is oldest
        self.count_uncertain = config.uncertain
        self.culprit: str | None = None
        self.point_wildcard = config.point.endswith("/*")

    def on_reading(self, reading: Reading, now: float) -> None:
        bad = reading.value is None or reading.quality is Quality.BAD or (
            self.count_uncertain and reading.quality is Quality.UNCERTAIN)
        if bad:
            self.bad_since.setdefault(reading.name, now)
        else:
            self.bad_since.pop(reading.name, None)
        if not self.bad_since:
            self._leave(now)
            return
        # The oldest bad point drives the timer, whichever point it is.
        self.culprit, first = next(iter(self.bad_since.items()))
        if self.point_wildcard:
            self.point = self.culprit  # the event names the point that went bad
        if self.started is None or not self.active:
            self.started = first
        self.tick(now)

    def describe(self) -> str:
        where = f"{self.device}/{self.culprit}" if self.culprit else self.ref
        return f"{where}: bad quality for {human_duration(float(self.value or 0))}"

    def export_state(self) -> dict[str, Any]:
        data = super().export_state()
        data["bad_since"] = dict(self.bad_since)
        return data

    def restore_state(self, data: dict[str, Any]) -> None:
        super().restore_state(data)
        self.bad_since = {str(k): float(v) for k, v in data["bad_since"].items()}
