"""The rule engine is the isolation boundary of rule types (plugins): a rule whose code raises
is disabled and reported once, and every other rule keeps working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sdk.config import RuleConfig
from agent.sdk.models import Quality, Reading
from rules.builtin.threshold import ThresholdConfig
from rules.engine import RuleEngine
from tests.plugins import installed
from tests.rules.brittle import BRITTLE

T0 = 1_767_225_600.0


@pytest.fixture
def brittle(tmp_path: Path) -> Iterator[Any]:
    with installed(tmp_path / "site", dist="brittle_rules", group="batigate.rules",
                   entries={"brittle": "brittle_rule:BrittleRule"},
                   modules={"brittle_rule": BRITTLE}):
        from brittle_rule import BrittleConfig  # type: ignore[import-not-found]  # noqa: PLC0415

        yield BrittleConfig


def reading(name: str, value: float, ts: float = T0) -> Reading:
    return Reading("pump", name, value, None, Quality.GOOD, ts)


def threshold() -> RuleConfig:
    return ThresholdConfig.model_validate({"id": "high", "type": "threshold",
                                           "point": "pump/level", "above": 5})


def kinds(events: list[Any]) -> list[str]:
    return [e.as_dict()["type"] for e in events]


@pytest.mark.parametrize("fail_in", ["build", "reading", "tick", "export"])
def test_a_raising_rule_is_disabled_reported_once_and_the_others_go_on(
        brittle: Any, fail_in: str) -> None:
    rules = [brittle.model_validate({"id": "bad", "point": "pump/level", "fail_in": fail_in,
                                     "above": 1}), threshold()]
    engine = RuleEngine(rules)
    events = engine.tick(T0)
    if fail_in == "export":
        json.dumps(engine.export_state())  # the bad state is left out, the rest saves
        events += engine.tick(T0 + 0.5)
    events += engine.on_reading(reading("level", 9.0), T0 + 1)
    events += engine.on_reading(reading("level", 9.5), T0 + 2)
    events += engine.tick(T0 + 3)
    disabled = [e.as_dict() for e in events if e.as_dict()["type"] == "rule.disabled"]
    assert len(disabled) == 1, kinds(events)
    assert disabled[0]["rule"] == "bad" and disabled[0]["rule_type"] == "brittle"
    assert disabled[0]["reason"]
    assert set(engine.disabled()) == {"bad"}
    # the threshold rule on the same point still raised its alarm
    assert [e.alarm for e in events if e.as_dict()["type"] == "alarm.raised"] == ["high"]
    assert "bad" not in engine.export_state()["rules"]
    assert engine.next_deadline() is None  # a disabled rule's deadlines are dropped, no spin


def test_a_working_plugin_rule_is_not_disabled(brittle: Any) -> None:
    """The control case: the same plugin below its failing value works like any rule."""
    engine = RuleEngine([brittle.model_validate({"id": "ok", "point": "pump/level",
                                                 "above": 100})])
    events = engine.on_reading(reading("level", 9.0), T0)
    assert events == [] and engine.disabled() == {}
    assert engine.export_state()["rules"]["ok"]["state"] == {"seen": 1}
