"""The values that travel from drivers to the outbox: small, frozen, slotted, no pydantic."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

Value = float | int | bool | str


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"  # stale, clamped, or taken before the clock was synchronized
    BAD = "bad"  # the device answered with an error for this point, or the value cannot be decoded


@dataclass(frozen=True, slots=True)
class PointValue:
    """What a driver returns for one point of one poll: raw engineering value, before units."""

    name: str
    value: Value | None
    quality: Quality = Quality.GOOD
    unit: str | None = None  # SenML unit of a value the config does not declare (M-Bus auto names)
    reason: str | None = None  # why the quality is not good (exception 02, not available, NaN)
    # The number exactly as the meter sent it, when the driver knows it: (digits, decimal scale,
    # the meter's unit), e.g. ("00152340", "0.001", "m3"). Billing keeps it beside the SenML value.
    raw: tuple[str, str, str] | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One normalized reading: a value in a SenML primary unit with its time and quality."""

    device: str
    name: str
    value: Value | None
    unit: str | None
    ts: float
    quality: Quality = Quality.GOOD
    reason: str | None = None  # why the quality is bad, for the technician (`batigate read`)


class DeviceState(StrEnum):
    UNKNOWN = "unknown"
    OK = "ok"
    DOWN = "down"
