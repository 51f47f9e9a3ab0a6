"""`threshold`: a value below (or above) a limit, with hysteresis and on/off delays.

The condition is a Schmitt trigger followed by two delays: the trigger turns on when the value
crosses `below` (`above`), and off only when it comes back past `clear_above` (`clear_below`);
a value between the two changes nothing. The alarm condition turns on when the trigger has stayed
on for `for`, and off when it has stayed off for `clear_for`. Readings of bad quality or without
a number are ignored: a broken sensor is `bad_quality`'s business, not a reason to raise or clear.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.sdk.durations import Duration
from agent.sdk.models import Reading
from rules.builtin.base import Finite, PointRuleBase, Rule, fmt, human_duration, number_of


class ThresholdConfig(PointRuleBase):
    below: Finite | None = Field(None, description="raise when the value is below this")
    above: Finite | None = Field(None, description="raise when the value is above this")
    clear_above: Finite | None = Field(None, description="with below: clear at or above this")
    clear_below: Finite | None = Field(None, description="with above: clear at or below this")
    for_: Duration | None = Field(None, alias="for", description="on-delay (s)")
    clear_for: Duration | None = Field(None, description="off-delay (s)")

    @field_validator("clear_above")
    @classmethod
    def _clear_above(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None or "below" not in info.data:  # `below` invalid: already reported
            return value
        below = info.data["below"]
        if below is None:
            raise ValueError("clear_above goes with below (with above, write clear_below)")
        if value < below:
            raise ValueError(f"clear_above ({value:g}) is below `below` ({below:g}): the alarm "
                             "could never clear; clear_above must be at or above below")
        return value

    @field_validator("clear_below")
    @classmethod
    def _clear_below(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None or "above" not in info.data:
            return value
        above = info.data["above"]
        if above is None:
            raise ValueError("clear_below goes with above (with below, write clear_above)")
        if value > above:
            raise ValueError(f"clear_below ({value:g}) is above `above` ({above:g}): the alarm "
                             "could never clear; clear_below must be at or below above")
        return value

    @model_validator(mode="after")
    def _one_side(self) -> ThresholdConfig:
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of below or above "
                             "(two limits on one point are two rules)")
        return self


class ThresholdRule(Rule[ThresholdConfig]):
    config_model = ThresholdConfig

    def __init__(self, config: ThresholdConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.low_side = config.below is not None
        if self.low_side:
            self.limit = float(config.below)  # type: ignore[arg-type]
            self.clear_level = config.clear_above if config.clear_above is not None else self.limit
        else:
            self.limit = float(config.above)  # type: ignore[arg-type]
            self.clear_level = config.clear_below if config.clear_below is not None else self.limit
        self.on_delay = config.for_
        self.off_delay = config.clear_for
        self.threshold = self.limit
        self.trig = False  # Schmitt trigger output
        self.trig_since: float | None = None
        self.off_since: float | None = None  # trigger off while the condition is still on

    def on_reading(self, reading: Reading, now: float) -> None:
        x = number_of(reading)
        if x is None:
            return
        self.value = x
        self.unit = reading.unit
        if self.low_side:
            crossed, back = x < self.limit, x >= self.clear_level
        else:
            crossed, back = x > self.limit, x <= self.clear_level
        if crossed:
            self.off_since = None
            if not self.trig:
                self.trig, self.trig_since = True, now
        elif back:
            if self.trig:
                self.trig, self.trig_since = False, None
            if self.active and self.off_since is None:
                self.off_since = now
        self.tick(now)

    def tick(self, now: float) -> None:
        # Deadlines are always written `start + delay <= now`, the same sum next_deadline returns,
        # so a tick at exactly the deadline fires (no float drift between the two).
        if self.trig and not self.active:
            assert self.trig_since is not None
            if self.on_delay is None or self.trig_since + self.on_delay <= now:
                self.active, self.since = True, self.trig_since
        elif not self.trig and self.active:
            assert self.off_since is not None
            if self.off_delay is None or self.off_since + self.off_delay <= now:
                self.active, self.since, self.off_since = False, None, None

    def next_deadline(self) -> float | None:
        if self.trig and not self.active and self.on_delay is not None:
            return self.trig_since + self.on_delay  # type: ignore[operator]
        if not self.trig and self.active and self.off_delay is not None:
            return self.off_since + self.off_delay  # type: ignore[operator]
        return None

    def describe(self) -> str:
        side = "below" if self.low_side else "above"
        text = f"{self.ref} {side} {fmt(self.limit, self.unit)}"
        if self.on_delay:
            text += f" for {human_duration(self.on_delay)}"
        if self.value is not None:
            text += f" (value {fmt(self.value, self.unit)})"
        return text

    def export_state(self) -> dict[str, Any]:
        return {"trig": self.trig, "trig_since": self.trig_since, "off_since": self.off_since,
                "active": self.active, "since": self.since, "value": self.value,
                "unit": self.unit}

    def restore_state(self, data: dict[str, Any]) -> None:
        self.trig = bool(data["trig"])
        self.trig_since = data["trig_since"]
        self.off_since = data["off_since"]
        self.active = bool(data["active"])
        self.since = data["since"]
        self.value = data["value"]
        self.unit = data["unit"]
        if (self.trig and self.trig_since is None) or (
                self.active and not self.trig and self.off_delay and self.off_since is None):
            raise ValueError("inconsistent threshold state")
