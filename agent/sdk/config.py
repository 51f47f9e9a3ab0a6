"""What a driver or a rule type reads of the config file: the bus, device, point and rule entries
they subclass (DESIGN §3.1). The gateway-wide sections are in `agent/config/models.py`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo,
                      field_validator, model_validator)

from agent.sdk import units
from agent.sdk.durations import Duration

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
PointName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class Strict(BaseModel):
    """Unknown keys are typos: reject them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# What a meter counts, for billing (the M-Bus medium byte of a meter maps onto these names).
Medium = Literal["cold_water", "hot_water", "water", "heat", "cooling", "gas", "electricity"]
Dwelling = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}$")]


class BusConfig(Strict):
    id: Ident
    driver: str


class PointConfig(Strict):
    name: PointName
    unit: str | None = None
    display_unit: str | None = Field(None, description="unit a person reads (dashboard, page, "
                                     "CLI), e.g. m3/h; the wire stays SenML")
    writable: bool = False
    min: float | None = Field(None, description="lowest value a write may set")
    max: float | None = Field(None, description="highest value a write may set")
    description: str = ""
    # Semantics for the birth inventory (DESIGN §3.2): what the point is, not how it is read.
    kind: str | None = Field(None, description="sensor, cmd, sp, alarm, status or counter")
    brick: str | None = Field(None, description="Brick class, e.g. brick:Water_Level_Sensor")
    haystack: list[str] | None = Field(None, description="Haystack tags, e.g. [water, level]")

    def is_boolean(self) -> bool:
        """Does this point hold true/false (rather than a number)? Writes check values against it
        (`agent.sdk.writes`). A driver whose points can be bools overrides it (Modbus: `type:
        bool`, coils, bits); the base knows no protocol and says no."""
        return False

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str | None) -> str | None:
        units.normalize(value)
        return value

    @field_validator("display_unit")
    @classmethod
    def _display_unit_fits(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if problem := units.check_display_unit(info.data.get("unit"), value):
                raise ValueError(problem)
        return value


class DeviceConfig(Strict):
    id: Ident
    bus: Ident
    address: int | None = None
    profile: str | None = None
    poll: Duration = 30.0
    timeout: Duration = Field(1.0, description="a request unanswered for this long is a timeout")
    points: list[PointConfig] = Field(default_factory=list)
    # Billing (agent/billing): a device with any of these is a meter with boundary indexes.
    dwelling: Dwelling | None = Field(None, description="the landlord's lot reference")
    medium: Medium | None = Field(None, description="what the meter counts")
    index_point: PointName | None = Field(None, description="the point that is the meter's "
                                          "index (default: energy or volume by medium)")
    rollover: int | None = Field(None, ge=2, description="the register counts 0..rollover-1 "
                                 "in the meter's own number, then starts again from 0")

    @model_validator(mode="after")
    def _unique_points(self) -> DeviceConfig:
        seen: set[str] = set()
        for point in self.points:
            if point.name in seen:
                raise ValueError(f"point {point.name!r} is declared twice")
            seen.add(point.name)
        return self


class RuleConfig(Strict):
    """Base of every rule type's parameters; `rules/` registers the types."""

    id: Ident
    type: str
    severity: Literal["critical", "major", "minor", "warning", "info"] = "major"

    def points(self) -> list[str]:
        """The `dev/point` references this rule reads, checked against the devices."""
        return []
