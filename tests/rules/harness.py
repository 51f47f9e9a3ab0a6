"""Test helpers: build rule configs the way the config loader does, and drive an engine like the
agent does (sleeping until `next_deadline`, ticking there), with a clock that is only the `now`
we pass."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from agent.sdk import registry
from agent.sdk.config import RuleConfig
from agent.sdk.durations import parse_duration
from agent.sdk.models import DeviceState, Quality, Reading
from rules.alarm import AlarmEvent
from rules.engine import RuleEngine


def rule(**item: Any) -> RuleConfig:
    """A validated rule config, found through the `batigate.rules` entry points."""
    if "for_" in item:
        item["for"] = item.pop("for_")
    rule_type = registry.load(registry.RULES, item["type"])
    return rule_type.config_model.model_validate(item)


def reading(ref: str, value: Any, ts: float, quality: str = "good",
            unit: str | None = None) -> Reading:
    device, _, name = ref.partition("/")
    return Reading(device, name, value, unit, ts, Quality(quality))


def when(value: Any) -> float:
    """Seconds: a number, an ISO time ("2026-01-01T01:00:00Z") or a duration ("90m")."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return parse_duration(value)


class Driver:
    """Drives an engine through steps, ticking at every deadline before each step."""

    def __init__(self, rules: list[RuleConfig]) -> None:
        self.rules = rules
        self.engine = RuleEngine(rules, tz=UTC)
        self.events: list[AlarmEvent] = []
        self.now: float | None = None

    def advance(self, now: float) -> None:
        """Sleep like the agent: wake at each deadline up to `now` and tick there."""
        guard = 0
        while (deadline := self.engine.next_deadline()) is not None and deadline <= now:
            self.events += self.engine.tick(deadline)
            guard += 1
            assert guard < 10_000, "next_deadline does not move forward"
        self.now = now

    def restart(self) -> None:
        """What the agent does across a restart: persist as JSON, build a new engine."""
        state = json.loads(json.dumps(self.engine.export_state()))
        self.engine = RuleEngine(self.rules, state, tz=UTC)

    def step(self, step: dict[str, Any]) -> None:
        now = when(step["t"])
        if self.now is not None:
            self.advance(now)
        engine = self.engine
        if "read" in step:
            ts = when(step.get("ts", now))
            self.events += engine.on_reading(
                reading(step["read"], step.get("v"), ts, step.get("q", "good"), step.get("u")),
                now)
        elif "state" in step:
            self.events += engine.on_device_state(step["state"], DeviceState(step["s"]), now)
        elif "ack" in step:
            self.events += engine.ack(step["ack"], step.get("by", "tech"), now)
        elif "maint" in step:
            until = step.get("until")
            self.events += engine.set_maintenance(
                step["maint"], None if until is None else when(until), now)
        elif "restart" in step:
            self.restart()
            self.events += self.engine.tick(now)  # the agent ticks once at start-up
        elif "active" in step:
            assert [a["alarm"] for a in self.engine.active()] == step["active"], step
        elif step.get("tick"):
            self.events += engine.tick(now)
        else:
            raise AssertionError(f"unknown step {step}")
        self.now = now


def expand(steps: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`{"series": "dev/point", "from": T, "every": S, "v": [...]}` is one reading per value."""
    for step in steps:
        if "series" in step:
            start, every = when(step["from"]), when(step["every"])
            for i, value in enumerate(step["v"]):
                extra = {k: step[k] for k in ("q", "u") if k in step}
                yield {"t": start + i * every, "read": step["series"], "v": value, **extra}
        else:
            yield step
