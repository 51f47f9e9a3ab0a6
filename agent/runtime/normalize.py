"""From a driver's raw point values to readings in SenML primary units."""

from __future__ import annotations

from collections.abc import Sequence

from agent.sdk import units
from agent.sdk.config import DeviceConfig
from agent.sdk.models import PointValue, Quality, Reading


class Normalizer:
    """Per device: the unit conversion of each point, worked out once at start."""

    def __init__(self, device: DeviceConfig) -> None:
        self.device = device.id
        self._units = {p.name: units.normalize(p.unit) for p in device.points}

    def readings(self, values: Sequence[PointValue], ts: float, *,
                 synced: bool = True) -> list[Reading]:
        out: list[Reading] = []
        for pv in values:
            unit, factor, offset = self._units.get(pv.name) or (pv.unit, 1.0, 0.0)
            value = pv.value
            if isinstance(value, int | float) and not isinstance(value, bool) and (
                    factor != 1.0 or offset != 0.0):
                value = value * factor + offset
            quality = pv.quality
            if not synced and quality is Quality.GOOD:
                quality = Quality.UNCERTAIN  # the timestamp cannot be trusted yet
            out.append(Reading(self.device, pv.name, None if quality is Quality.BAD else value,
                               unit, ts, quality, pv.reason))
        return out
