"""Scenario files: a timeline of faults for the simulated building, and the clock they run on.

A scenario is a YAML list of steps, applied in time order:

    - {at: 0s, time: "01:00"}                       # jump the building's clock to 01:00 UTC
    - {at: 30s, device: vmc, set: {depression: 20}} # force a value (null gives it back)
    - {at: 60s, device: meter-3, silent: true}      # stop answering, like an unplugged slave

`at` is scenario time from the start of `Building.play`; with `speed` > 1 the whole building
(its physics and the timeline) runs that many times faster, so a test plays 5 minutes in 3 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import yaml

from agent.sdk.durations import parse_duration

PACKAGE = "agent.sim.scenarios"
_STEP_KEYS = {"at", "device", "set", "silent", "time", "note"}


@dataclass(frozen=True)
class Step:
    at: float  # seconds of scenario time
    device: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    silent: bool | None = None
    time: str | None = None  # HH:MM UTC: move the clock forward to the next such time
    note: str = ""


def installed() -> list[str]:
    folder = resources.files(PACKAGE)
    return sorted(e.name.removesuffix(".yaml") for e in folder.iterdir()
                  if e.name.endswith(".yaml"))


def load(name: str) -> list[Step]:
    """The steps of scenario `name`, sorted by time; ValueError naming the bad step otherwise."""
    if name not in installed():
        raise ValueError(f"unknown scenario {name!r}; installed: {', '.join(installed())}")
    text = resources.files(PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return parse(yaml.safe_load(text), name)


def parse(data: Any, name: str = "<scenario>") -> list[Step]:
    if not isinstance(data, list) or not data:
        raise ValueError(f"scenario {name}: a non-empty list of steps")
    steps = []
    for index, raw in enumerate(data):
        where = f"scenario {name}, step {index}"
        if not isinstance(raw, dict) or "at" not in raw:
            raise ValueError(f"{where}: a mapping with `at:` (e.g. at: 30s)")
        unknown = set(raw) - _STEP_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        at = 0.0 if raw["at"] in (0, "0", "0s") else parse_duration(raw["at"])
        if "time" in raw:
            _hhmm(str(raw["time"]))
        elif raw.get("device") is None or not ({"set", "silent"} & set(raw)):
            raise ValueError(f"{where}: give `device:` with `set:` or `silent:`, or `time:`")
        if not isinstance(raw.get("set", {}), dict):
            raise ValueError(f"{where}: `set:` maps variables to values")
        steps.append(Step(at=at, device=raw.get("device"), set=dict(raw.get("set", {})),
                          silent=raw.get("silent"), time=raw.get("time"),
                          note=str(raw.get("note", ""))))
    return sorted(steps, key=lambda s: s.at)


def _hhmm(text: str) -> tuple[int, int]:
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"time {text!r}: write HH:MM (UTC)")
    return int(hours), int(minutes)


class SimClock:
    """Wall-clock seconds for the simulated devices, that can run faster and jump forward.

    The devices take `now` as a callable; re-anchoring on every rate change keeps the time
    continuous, so counters never go back.
    """

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._anchor_real = monotonic()
        self._anchor_sim = wall()
        self.rate = 1.0

    def __call__(self) -> float:
        return self._anchor_sim + (self._monotonic() - self._anchor_real) * self.rate

    def set_rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("speed must be greater than zero")
        self._anchor_sim, self._anchor_real = self(), self._monotonic()
        self.rate = rate

    def jump_to(self, hhmm: str) -> float:
        """Move forward to the next HH:MM UTC; returns the seconds skipped."""
        hours, minutes = _hhmm(hhmm)
        now = self()
        day = datetime.fromtimestamp(now, tz=timezone.utc).replace(hour=hours, minute=minutes,
                                                                   second=0, microsecond=0)
        target = day.timestamp()
        if target <= now:
            target += 86400
        self._anchor_sim += target - now
        return target - now
