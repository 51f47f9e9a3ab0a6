"""What every rule type shares: the config base, the `Rule` base class and small value helpers.

A rule instance owns the state of one condition (one alarm). The engine feeds it readings, device
states and ticks, then reads `active`, `since`, `value`, `threshold`, `unit` and `describe()`:
the alarm lifecycle (raise, clear, ack, latch, maintenance) lives in `rules.alarm`, never here,
so a rule type only answers "is the condition true now?".
"""

from __future__ import annotations

import math
from datetime import tzinfo
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from agent.sdk import units
from agent.sdk.config import RuleConfig
from agent.sdk.models import DeviceState, Quality, Reading, Value

_DEVICE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
_POINT_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _check_ref(ref: str, *, device_wildcard: bool) -> str:
    dev, slash, name = ref.partition("/")
    ok_dev = bool(dev) and dev[0] != "-" and len(dev) <= 63 and set(dev) <= _DEVICE_CHARS
    ok_name = (name == "*" and device_wildcard) or (
        bool(name) and name[0].isalpha() and len(name) <= 63 and set(name) <= _POINT_CHARS)
    if not (slash and ok_dev and ok_name):
        what = "device/point or device/*" if device_wildcard else "device/point"
        raise ValueError(f"{ref!r} is not a point reference; write it {what}, "
                         "e.g. vmc-b/exhaust_pressure")
    return ref


def _quantity(unit: str) -> Any:
    """Accept a number in the SenML unit `unit`, or a string with a unit ("5 l/h", "500 l")."""

    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        number, _, written = value.strip().partition(" ")
        try:
            amount = float(number)
            target, factor, offset = units.normalize(written.strip() or unit)
        except ValueError:
            raise ValueError(f"{value!r}: write a number in {unit} or a quantity such as "
                             f"'5 l/h'") from None
        if target != unit:
            raise ValueError(f"{value!r} is not convertible to {unit}")
        return amount * factor + offset

    return BeforeValidator(parse)


PointRef = Annotated[str, AfterValidator(lambda ref: _check_ref(ref, device_wildcard=False))]
PointOrDevice = Annotated[str, AfterValidator(lambda ref: _check_ref(ref, device_wildcard=True))]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Flow = Annotated[float, _quantity("m3/s"), Field(ge=0, allow_inf_nan=False)]
Volume = Annotated[float, _quantity("m3"), Field(ge=0, allow_inf_nan=False)]


class RuleBase(RuleConfig):
    """Parameters shared by the built-in types; `for` is a keyword in Python, hence the alias."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    latch: bool = Field(False, description="clear only once acknowledged and the condition gone")


class PointRuleBase(RuleBase):
    point: PointRef

    def points(self) -> list[str]:
        return [self.point]


C = TypeVar("C", bound=RuleConfig)


class Rule(Generic[C]):
    """One configured rule: state in, condition out. Subclasses set `config_model`."""

    config_model: ClassVar[type[RuleConfig]]
    wants_device_state: ClassVar[bool] = False  # only comm_lost needs driver state changes

    def __init__(self, config: C, *, tz: tzinfo | None = None) -> None:
        self.config = config
        self.id = config.id
        self.tz = tz  # local time of the building (night windows, days); None = system local
        refs = config.points()
        dev, _, name = refs[0].partition("/") if refs else ("", "", "")
        self.device: str | None = dev or None
        self.point: str | None = name if name and name != "*" else None
        # The condition, read by the engine after each call.
        self.active = False
        self.since: float | None = None  # when the situation behind the condition began
        self.value: Value | None = None
        self.threshold: Value | None = None
        self.unit: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.device}/{self.point}" if self.point else f"{self.device}"

    def watches(self) -> list[str]:
        """`dev/point` or `dev/*` whose readings this rule must see."""
        return self.config.points()

    def on_reading(self, reading: Reading, now: float) -> None:
        """Called for each reading of a watched point."""

    def on_device_state(self, device: str, state: DeviceState, now: float) -> None:
        """Called on device state changes when `wants_device_state`."""

    def tick(self, now: float) -> None:
        """Re-evaluate time-driven conditions; safe to call at any time."""

    def start(self, now: float) -> None:
        """First call of an engine's life (also right after a restore): the first `now`."""
        self.tick(now)

    def next_deadline(self) -> float | None:
        """Earliest time `tick` may change the condition (a lower bound is fine), or None."""
        return None

    def describe(self) -> str:
        """Short human text of the current condition for the operations team."""
        return f"{self.ref}: {type(self).__name__}"

    def export_state(self) -> dict[str, Any]:
        return {}

    def restore_state(self, data: dict[str, Any]) -> None:
        """Inverse of export_state; KeyError/TypeError/ValueError on garbage."""


# ---- value helpers ---------------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "on", "yes", "open", "run", "running"})
_FALSE = frozenset({"0", "false", "off", "no", "closed", "stop", "stopped"})


def usable(reading: Reading) -> bool:
    """A value a condition may be judged on: bad quality and missing values change nothing."""
    return reading.value is not None and reading.quality is not Quality.BAD


def as_number(value: object) -> float | None:
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def number_of(reading: Reading) -> float | None:
    """The reading's value as a number when a condition may be judged on it, else None."""
    return as_number(reading.value) if usable(reading) else None


def as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def human_duration(seconds: float) -> str:
    """1500 -> '25m', 7500 -> '2h05m', 93600 -> '1d02h': operators read these on a phone."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if hours else f"{days}d"


def fmt(value: object, unit: str | None = None) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"  # as written in the YAML
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return f"{text} {unit}" if unit else text
