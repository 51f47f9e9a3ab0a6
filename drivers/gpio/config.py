"""The GPIO part of the config file: one chip per bus, input lines and the points derived from them.

A point is either an *input* (`line:` on the chip, read as a debounced bool) or *derived* from an
input of the same device (`of:` + `derive:`): how long it has been active, how many times it
became active in the last hour, or since the agent started.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from agent.sdk.config import BusConfig, DeviceConfig, PointConfig, PointName
from agent.sdk.durations import parse_duration

Bias = Literal["as-is", "disabled", "pull-up", "pull-down"]
Derive = Literal["active_for", "activations_last_hour", "activations"]


def _parse_debounce(value: object) -> float:
    # Zero is a legitimate choice (a clean electronic output), which `Duration` would refuse.
    if value in (0, "0", "0ms", "0s"):
        return 0.0
    return parse_duration(value)


Debounce = Annotated[float, BeforeValidator(_parse_debounce)]


class GpioBusConfig(BusConfig):
    driver: Literal["gpio"]
    chip: str = Field("/dev/gpiochip0", description="GPIO character device (or chip name)")
    consumer: str = Field("batigate", max_length=31,
                          description="label shown by gpioinfo for the requested lines")


class GpioPointConfig(PointConfig):
    line: int | None = Field(None, ge=0, le=511, description="input: line offset on the chip")
    active_low: bool = Field(False, description="the contact is 'active' when the line is low")
    bias: Bias = Field("as-is", description="internal pull resistor for a floating contact")
    debounce: Debounce = Field(0.05, description="a level must hold this long to count (s)")
    of: PointName | None = Field(None, description="derived point: the input it is computed from")
    derive: Derive | None = None

    @model_validator(mode="before")
    @classmethod
    def _line_or_derived(cls, data: Any) -> Any:
        # Profiles declare an input without its line: say what to add rather than "missing".
        if isinstance(data, dict) and data.get("line") is None and data.get("of") is None:
            raise ValueError("an input point needs `line:` (its offset on the GPIO chip, e.g. "
                             f"line: 17) for point {data.get('name')!r}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> GpioPointConfig:
        if self.line is not None and (self.of is not None or self.derive is not None):
            raise ValueError("a point is either an input (line:) or derived (of: + derive:), "
                             "not both")
        if (self.of is None) != (self.derive is None):
            raise ValueError("a derived point needs both `of:` (the input point) and `derive:` "
                             "(active_for, activations_last_hour or activations)")
        if self.writable:
            raise ValueError("GPIO points are inputs; they cannot be writable")
        return self

    @property
    def is_input(self) -> bool:
        return self.line is not None


class GpioDeviceConfig(DeviceConfig):
    points: list[GpioPointConfig] = Field(default_factory=list)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _references(self) -> GpioDeviceConfig:
        inputs = {p.name: p for p in self.points if p.is_input}
        lines: dict[int, str] = {}
        for point in self.points:
            if point.line is not None:
                if point.line in lines:
                    raise ValueError(f"line {point.line} is used by {lines[point.line]!r} and "
                                     f"{point.name!r}")
                lines[point.line] = point.name
            if point.of is not None and point.of not in inputs:
                raise ValueError(f"point {point.name!r}: `of: {point.of}` is not an input point "
                                 f"of this device (inputs: {', '.join(inputs) or 'none'})")
        return self

    def inputs(self) -> list[GpioPointConfig]:
        return [p for p in self.points if p.is_input]
