"""The simulated building's wired M-Bus meters: which dwelling each one bills and what it
counts, what it keeps in memory (set-day and month-end values with their dates, as real meters
do), the scenario handle of each, and their entries in the gateway config.

Every water meter keeps its set-day value (storage 1, the index at the start of this month) and
two month-end values (storages 2, 3); meters 2 and 5 keep a clock and date their month-end values
with the instant they froze them (type F), the others with the day (type G). Heat meters keep
theirs in a second telegram. All of them were on the wall before the simulation starts (`past`),
so last month's values are there at the first read-out: `batigate demo` then `batigate meters
export --month <last month>` bills last month from the meters' own memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.sim.scripted import number, unknown
from drivers.mbus.simulator import HeatMeter, SimMeter, WaterMeter, default_meters

# Billing keys of the simulated meters: the landlord's lot reference and what each one counts.
METER_BILLING = {1: ("A-011", "cold_water"), 2: ("A-012", "cold_water"), 3: ("A-012", "hot_water"),
                 4: ("B-021", "cold_water"), 5: ("B-022", "cold_water"), 10: ("A-011", "heat"),
                 11: ("A-012", "heat"), 12: ("B-021", "heat")}
CLOCKED = (2, 5)  # water meters that date their month-end values with a date-time
WATER_HISTORY, HEAT_HISTORY = 3, 3  # storages kept: the set-day value + two month ends


def building_meters(clock: Callable[[], float], tz: str) -> list[SimMeter]:
    """The bus's meters, with the memory real ones have (see the module's docstring)."""
    meters = default_meters(clock, tz)
    for meter in meters:
        meter.past = True
        if isinstance(meter, WaterMeter):
            meter.history_months = WATER_HISTORY
            meter.stamped = meter.primary in CLOCKED
            if meter.base_litres == 0:
                meter.base_litres = 63_210  # meter 4 was fitted years ago too
        elif isinstance(meter, HeatMeter):
            meter.history_months = max(meter.history_months, HEAT_HISTORY)
    return meters


class MeterHandle:
    """An M-Bus meter in a scenario: water meters take `leak` (l/h) and `daily` (l/day)."""

    def __init__(self, meter: SimMeter, clock: Callable[[], float]) -> None:
        self.meter = meter
        self.clock = clock
        self.variables = ("leak", "daily") if isinstance(meter, WaterMeter) else ()

    def set(self, name: str, value: Any) -> None:
        meter = self.meter
        if not isinstance(meter, WaterMeter) or name not in ("leak", "daily"):
            known = "leak, daily" if isinstance(meter, WaterMeter) else "none (silent: only)"
            raise unknown(f"meter {meter.primary}", name, known)
        amount = number(name, value)
        assert amount is not None
        # The index integrates the flow since `started`: restart the integral from the index
        # now, or the new flow would rewrite the past and the index would jump.
        now = self.clock()
        meter.base_litres, meter.started = meter.litres(now), now
        if name == "leak":
            meter.leak_lph = amount
        else:
            meter.daily_litres = amount


def meter_name(meter: SimMeter) -> str:
    return f"heat-{meter.primary}" if isinstance(meter, HeatMeter) else f"meter-{meter.primary}"


def meter_devices(slow: dict[str, Any]) -> list[dict[str, Any]]:
    """The meters' entries of `devices:`, by profile, with their dwelling and medium."""
    return [{"id": meter_name(m), "bus": "meters", "address": m.primary,
             "profile": "heat-meter" if isinstance(m, HeatMeter) else "water-meter",
             "dwelling": METER_BILLING[m.primary][0], "medium": METER_BILLING[m.primary][1],
             "timeout": "1s", **slow} for m in default_meters()]
