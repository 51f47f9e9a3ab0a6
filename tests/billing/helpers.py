"""A simulated M-Bus water meter read the way the driver reads it (frame -> codec -> mapping)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.billing.index import MeterIndex, Outcome
from agent.billing.meters import spec_of
from agent.sdk.clock import SystemClock
from agent.sdk.models import PointValue
from drivers.mbus import mapping
from drivers.mbus.codec import decode_frame
from drivers.mbus.config import MBusDeviceConfig
from drivers.mbus.simulator import WaterMeter

PARIS = ZoneInfo("Europe/Paris")


def paris(*args: int) -> float:
    return datetime(*args, tzinfo=PARIS).timestamp()  # type: ignore[misc]


class SteppedClock(SystemClock):
    """The system clock's scheduling, with a wall clock the test moves forward (for an agent
    running in the test's process)."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.time()

    def time(self) -> float:
        return time.time() + self.offset

    def synced(self) -> bool:
        return True

    def jump_to(self, wall: float) -> None:
        self.offset = wall - time.time()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def water_meter(clock: Clock, ident: str = "21000001", base: float = 152_340, daily: float = 320,
                history: int = 2) -> WaterMeter:
    return WaterMeter(1, ident, "SAP", 0x15, 0x16, clock, daily_litres=daily, base_litres=base,
                      history_months=history, tz="Europe/Paris")


def device(**extra: Any) -> MBusDeviceConfig:
    return MBusDeviceConfig.model_validate({"id": "wm-a011", "bus": "meters", "address": 1,
                                            "dwelling": "A-011", "medium": "cold_water", **extra})


def read(meter: WaterMeter) -> list[PointValue]:
    """One poll: the meter's telegram decoded and named as a meter without points."""
    meter.last_fcb = None
    return mapping.auto(decode_frame(meter.respond_ud2(True)).records)


class Rig:
    """A meter, the clock both share, and the MeterIndex under test (state carried over)."""

    def __init__(self, start: float, max_offset: float = 900.0, **meter: Any) -> None:
        self.clock = Clock(start)
        self.meter = water_meter(self.clock, **meter)
        self.max_offset = max_offset
        self.spec = spec_of(device())
        assert self.spec is not None
        self.index = MeterIndex(self.spec, PARIS, max_offset)
        self.indexes: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.derived: list[Any] = []

    def at(self, t: float, values: list[PointValue] | None = None) -> Outcome:
        self.clock.now = t
        out = self.index.observe({v.name: v for v in values or read(self.meter)}, t)
        self.indexes += [record for record, _ in out.indexes]
        self.events += out.events
        self.derived += out.derived
        return out

    def restart(self) -> None:
        """The agent restarts with the state it had persisted."""
        self.index = MeterIndex(self.spec, PARIS, self.max_offset, self.index.state)

    def run(self, start: float, end: float, step: float) -> None:
        t = start
        while t <= end:
            self.at(t)
            t += step

    def litres(self, t: float) -> int:
        return int(self.meter.litres(t))
