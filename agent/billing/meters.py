"""Which devices are billed meters, and which of their points hold what billing needs.

A device is a meter when the config says something about billing on it (`dwelling`, `medium`,
`index_point`, `rollover`) or when it uses a meter profile (`water-meter`, `heat-meter`). Its
index point is `index_point`, else `energy` for heat, cooling and electricity and `volume` for
water and gas, else `energy` when the device has such a point, else `volume`.

Stored values (M-Bus storage numbers 1..n: set-day, month-end) pair with the date record of the
same storage number: a configured point `record: {quantity: volume, storage: 1}` with the point
`record: {quantity: date, storage: 1}`; a meter without points publishes them as `volume_s1` and
`date_s1`, paired by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.sdk import units
from agent.sdk.config import DeviceConfig

METER_PROFILES = ("water-meter", "heat-meter")
BILLING_KEYS = ("dwelling", "medium", "index_point", "rollover")
ENERGY_MEDIA = ("heat", "cooling", "electricity")
VOLUME_MEDIA = ("cold_water", "hot_water", "water", "gas")
ID_POINTS = ("meter_id", "fabrication_no")
FLOW_POINTS = ("flow", "volume_flow")
DATE_QUANTITIES = ("date", "date_time")
HOUR_FLOW = "hour_flow"  # derived: the average flow of each whole hour, for the leak rules

# EN 13757-3 medium byte -> billing medium (the codes building meters use).
MBUS_MEDIA = {0x02: "electricity", 0x03: "gas", 0x04: "heat", 0x06: "hot_water", 0x07: "water",
              0x0A: "cooling", 0x0B: "cooling", 0x0C: "heat", 0x0D: "heat", 0x15: "hot_water",
              0x16: "cold_water"}

_STORED_NAME = re.compile(r"^(?P<q>[a-z][a-z0-9_]*?)_s(?P<n>[0-9]{1,4})$")


@dataclass(frozen=True, slots=True)
class MeterSpec:
    dev: str
    dwelling: str | None
    medium: str | None
    index: str  # the index point
    unit: str | None  # the index point's configured unit (the meter's unit when no raw digits)
    stored: tuple[tuple[str, tuple[str, ...]], ...]  # (value point, its date points) per storage
    auto: bool  # no configured points: stored values are paired by their generated names
    rollover: int | None
    meter_ref: str | None  # what the config says identifies the meter (secondary address)

    def ratio(self, meter_unit: str | None) -> float:
        """Factor from the meter's unit to the SenML unit of the index."""
        return units.normalize(meter_unit)[1] if meter_unit else 1.0

    def stored_pairs(self, names: set[str]) -> list[tuple[str, str]]:
        if not self.auto:
            # A storage may have a date point and a date-time point (meters send one or the
            # other): the one this read-out has, else the first (reported missing).
            return [(value, next((d for d in dates if d in names), dates[0]))
                    for value, dates in self.stored]
        out = []
        for name in sorted(names):
            found = _STORED_NAME.match(name)
            if found and found["q"] == self.index:
                for quantity in DATE_QUANTITIES:
                    date_name = f"{quantity}_s{found['n']}"
                    if date_name in names:
                        out.append((name, date_name))
                        break
                else:
                    out.append((name, f"date_s{found['n']}"))  # missing: reported invalid
        return out


def medium_of(device: DeviceConfig) -> str | None:
    medium = getattr(device, "medium", None)
    if isinstance(medium, int) and not isinstance(medium, bool):
        return MBUS_MEDIA.get(medium)
    return medium if isinstance(medium, str) else None


def is_meter(device: DeviceConfig) -> bool:
    return (any(getattr(device, key, None) is not None for key in BILLING_KEYS)
            or device.profile in METER_PROFILES)


def spec_of(device: DeviceConfig) -> MeterSpec | None:
    if not is_meter(device):
        return None
    medium = medium_of(device)
    names = {p.name for p in device.points}
    index = device.index_point
    if index is None:
        if medium in ENERGY_MEDIA:
            index = "energy"
        elif medium in VOLUME_MEDIA:
            index = "volume"
        else:
            index = "energy" if "energy" in names else "volume"
    unit = next((p.unit for p in device.points if p.name == index), None)
    secondary = getattr(device, "secondary", None)
    return MeterSpec(dev=device.id, dwelling=device.dwelling, medium=medium, index=index,
                     unit=unit, stored=_configured_pairs(device, index), auto=not device.points,
                     rollover=device.rollover,
                     meter_ref=secondary if isinstance(secondary, str) else None)


def _selector(point: Any) -> Any:
    return getattr(point, "record", None)


def _configured_pairs(device: DeviceConfig,
                      index: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Points of the index's quantity at storage n > 0, each with the date points of storage n."""
    index_point = next((p for p in device.points if p.name == index), None)
    quantity = getattr(_selector(index_point), "quantity", index)
    dates: dict[int, list[str]] = {}
    values: list[tuple[int, str]] = []
    for point in device.points:
        selector = _selector(point)
        if selector is None or selector.storage == 0 or selector.tariff or selector.subunit:
            continue
        if selector.quantity in DATE_QUANTITIES:
            dates.setdefault(selector.storage, []).append(point.name)
        elif selector.quantity == quantity and selector.function == "instantaneous":
            values.append((selector.storage, point.name))
    return tuple((name, tuple(dates.get(storage, [f"date_s{storage}"])))
                 for storage, name in values)


def derived_points(device: DeviceConfig) -> list[str]:
    """Points billing adds for the rules of a meter (`hour_flow` on a volume index)."""
    spec = spec_of(device)
    if spec is None or spec.medium in ENERGY_MEDIA or spec.index != "volume":
        return []
    return [HOUR_FLOW]
