"""`Obs`: one reading of a meter's index as billing keeps it (the meter's digits, their scale
and unit, the meter's id, and the continuous count `cum` that consumption is a difference of)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Obs:
    """One reading of the index as billing keeps it."""

    t: float
    digits: str  # the number as the meter sent it
    scale: str  # decimal factor to the meter's unit
    unit: str | None  # the meter's unit (m3, Wh, kWh...)
    meter: str | None  # the meter's id, when known
    cum: Decimal  # continuous count across rollovers and replacements

    @property
    def count(self) -> Decimal:
        return Decimal(self.digits)

    def exact(self) -> str:
        """The meter's value in its own unit, exactly: 00152340 x 0.001 -> 152.340."""
        return f"{self.count * Decimal(self.scale):f}"

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "digits": self.digits, "scale": self.scale,
                "unit": self.unit, "meter": self.meter, "cum": str(self.cum)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Obs:
        return cls(float(d["t"]), str(d["digits"]), str(d["scale"]), d.get("unit"),
                   d.get("meter"), Decimal(str(d["cum"])))
