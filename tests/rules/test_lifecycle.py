"""Alarm lifecycle through the engine: ack, latch, maintenance, restart, state export."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import pytest

from agent.sdk.models import DeviceState
from rules.alarm import AlarmEvent
from rules.engine import RuleEngine
from tests.rules.harness import reading, rule

LOW = rule(id="vmc-b-low", type="threshold", point="vmc-b/exhaust_pressure", below=50,
           clear_above=60, for_="10m", severity="major")
DOOR = rule(id="door-open", type="held", point="garage/door", value=True, for_="5m",
            severity="minor")
COMM = rule(id="pump-comm", type="comm_lost", device="pump-1", for_="5m")
STALE = rule(id="meter-silent", type="stale", point="meter-1/*", for_="1h")


def kinds(events: list[AlarmEvent]) -> list[tuple[str, str]]:
    return [(e.kind, e.alarm) for e in events]


def pressure(engine: RuleEngine, value: float, now: float) -> list[AlarmEvent]:
    return engine.on_reading(reading("vmc-b/exhaust_pressure", value, now, unit="Pa"), now)


def restarted(engine: RuleEngine, rules: list[Any]) -> RuleEngine:
    state = json.loads(json.dumps(engine.export_state()))  # what the outbox DB would hold
    return RuleEngine(rules, state, tz=UTC)


def raised_low(now: float = 0.0) -> RuleEngine:
    engine = RuleEngine([LOW, DOOR], tz=UTC)
    assert pressure(engine, 40, now) == []
    assert kinds(engine.tick(now + 600)) == [("raised", "vmc-b-low")]
    return engine


def test_event_payload_is_the_evt_message() -> None:
    engine = RuleEngine([LOW], tz=UTC)
    pressure(engine, 40, 0)
    (event,) = engine.tick(600)
    payload = event.as_dict()
    assert payload == {
        "type": "alarm.raised", "alarm": "vmc-b-low", "rule": "vmc-b-low",
        "rule_type": "threshold", "severity": "major", "since": 0, "ts": 600,
        "message": "vmc-b/exhaust_pressure below 50 Pa for 10m (value 40 Pa)",
        "device": "vmc-b", "point": "exhaust_pressure", "value": 40.0, "threshold": 50.0,
        "unit": "Pa"}
    json.dumps(payload)


def test_no_duplicate_raise_while_the_condition_lasts() -> None:
    engine = raised_low()
    for t in range(700, 5000, 60):
        assert pressure(engine, 30, t) == []
        assert engine.tick(t + 1) == []
    assert [a["alarm"] for a in engine.active()] == ["vmc-b-low"]


def test_ack_unknown_alarm_is_a_key_error() -> None:
    engine = raised_low()
    with pytest.raises(KeyError, match="no-such-rule"):
        engine.ack("no-such-rule", "marie", 700)


def test_ack_is_once_and_does_not_clear_an_unlatched_alarm() -> None:
    engine = raised_low()
    (acked,) = engine.ack("vmc-b-low", "marie", 700)
    assert (acked.kind, acked.by, acked.since, acked.ts) == ("acked", "marie", 0, 700)
    assert engine.ack("vmc-b-low", "paul", 710) == []
    assert engine.ack("door-open", "paul", 710) == []  # known but not raised: nothing to do
    (snapshot,) = engine.active()
    assert snapshot["acked"] is True and snapshot["acked_by"] == "marie"
    assert kinds(pressure(engine, 65, 800)) == [("cleared", "vmc-b-low")]
    assert engine.active() == []


def test_latched_alarm_waits_for_ack_and_for_the_condition() -> None:
    latched = rule(id="sump-high", type="threshold", point="sump/level", above=0.8, latch=True)
    engine = RuleEngine([latched], tz=UTC)

    def level(value: float, now: float) -> list[AlarmEvent]:
        return engine.on_reading(reading("sump/level", value, now, unit="m"), now)

    assert kinds(level(0.9, 0)) == [("raised", "sump-high")]
    assert level(0.5, 10) == []  # condition gone, not acknowledged: stays
    (snapshot,) = engine.active()
    assert snapshot["latched"] is True
    assert level(0.95, 20) == []  # back again: still the same alarm, no second raise
    assert kinds(engine.ack("sump-high", "marie", 30)) == [("acked", "sump-high")]
    assert kinds(level(0.4, 40)) == [("cleared", "sump-high")]


def test_maintenance_holds_back_and_raises_at_its_end() -> None:
    engine = RuleEngine([LOW, DOOR], tz=UTC)
    assert engine.set_maintenance("vmc-b", 3000, 0) == []
    assert engine.maintenance() == {"vmc-b": 3000}
    pressure(engine, 40, 10)
    assert kinds(engine.tick(610)) == [("suppressed", "vmc-b-low")]
    assert engine.tick(1000) == [] and engine.active() == []
    assert engine.next_deadline() == 3000
    (event,) = engine.tick(3000)
    assert (event.kind, event.since, event.ts) == ("raised", 10, 3000)
    assert engine.maintenance() == {}


def test_maintenance_condition_gone_before_the_end_raises_nothing() -> None:
    engine = RuleEngine([LOW], tz=UTC)
    engine.set_maintenance("vmc-b", 3000, 0)
    pressure(engine, 40, 10)
    engine.tick(610)
    assert pressure(engine, 70, 1000) == []
    assert engine.set_maintenance("vmc-b", None, 1200) == []
    assert engine.tick(4000) == []


def test_maintenance_does_not_hide_an_alarm_already_raised_nor_its_clear() -> None:
    engine = raised_low()
    engine.set_maintenance("vmc-b", 5000, 700)
    assert [a["alarm"] for a in engine.active()] == ["vmc-b-low"]
    assert kinds(pressure(engine, 65, 800)) == [("cleared", "vmc-b-low")]


def test_maintenance_is_per_device() -> None:
    engine = RuleEngine([LOW, DOOR], tz=UTC)
    engine.set_maintenance("garage", 5000, 0)
    pressure(engine, 40, 0)
    assert kinds(engine.tick(600)) == [("raised", "vmc-b-low")]


def test_restart_gives_no_second_raise() -> None:
    engine = raised_low()
    engine = restarted(engine, [LOW, DOOR])
    assert engine.tick(700) == []
    assert pressure(engine, 30, 760) == []
    assert [a["alarm"] for a in engine.active()] == ["vmc-b-low"]
    assert kinds(pressure(engine, 70, 800)) == [("cleared", "vmc-b-low")]


def test_restart_clears_at_the_first_evaluation_when_the_condition_went_away() -> None:
    engine = raised_low()
    engine = restarted(engine, [LOW, DOOR])
    (event,) = pressure(engine, 75, 9000)  # fixed while the agent was down
    assert (event.kind, event.since, event.ts, event.value) == ("cleared", 0, 9000, 75.0)


def test_restart_keeps_ack_latch_and_maintenance() -> None:
    latched = rule(id="sump-high", type="threshold", point="sump/level", above=0.8, latch=True)
    engine = RuleEngine([latched, LOW], tz=UTC)
    engine.on_reading(reading("sump/level", 0.9, 0), 0)
    engine.on_reading(reading("sump/level", 0.5, 10), 10)
    engine.set_maintenance("vmc-b", 5000, 20)
    engine = restarted(engine, [latched, LOW])
    assert engine.tick(30) == []
    assert engine.maintenance() == {"vmc-b": 5000}
    assert kinds(engine.ack("sump-high", "marie", 40)) == [("acked", "sump-high"),
                                                           ("cleared", "sump-high")]
    pressure(engine, 40, 50)
    assert kinds(engine.tick(650)) == [("suppressed", "vmc-b-low")]


def test_restart_after_maintenance_ended_while_down_raises_what_was_held() -> None:
    engine = RuleEngine([LOW], tz=UTC)
    engine.set_maintenance("vmc-b", 1000, 0)
    pressure(engine, 40, 0)
    assert kinds(engine.tick(600)) == [("suppressed", "vmc-b-low")]
    engine = restarted(engine, [LOW])
    assert kinds(engine.tick(2000)) == [("raised", "vmc-b-low")]


def test_restart_with_a_removed_rule_clears_its_alarm() -> None:
    engine = raised_low()
    engine = restarted(engine, [DOOR])
    (event,) = engine.tick(700)
    assert (event.kind, event.alarm, event.device, event.severity) == (
        "cleared", "vmc-b-low", "vmc-b", "major")
    assert "removed" in event.message


def test_restart_with_changed_parameters_reevaluates_the_rule() -> None:
    engine = raised_low()
    stricter = rule(id="vmc-b-low", type="threshold", point="vmc-b/exhaust_pressure",
                    below=30, severity="critical")
    engine = restarted(engine, [stricter])
    # the new rule has no history: the alarm follows it from its first evaluation
    assert kinds(engine.tick(700)) == [("cleared", "vmc-b-low")]
    (event,) = pressure(engine, 20, 710)
    assert (event.kind, event.severity, event.threshold) == ("raised", "critical", 30.0)


def test_severity_change_keeps_the_rule_state() -> None:
    engine = raised_low()
    louder = LOW.model_copy(update={"severity": "critical"})
    engine = restarted(engine, [louder])
    assert engine.tick(700) == []


def test_restart_of_absence_rules_does_not_count_the_agent_downtime() -> None:
    engine = RuleEngine([COMM, STALE], tz=UTC)
    engine.tick(0)
    engine.on_device_state("pump-1", DeviceState.DOWN, 100)  # pending, not yet 5 min
    engine.on_reading(reading("meter-1/index", 1.0, 100), 100)
    engine = restarted(engine, [COMM, STALE])
    assert engine.tick(86400) == []  # a day later: the agent was down, not the devices
    assert engine.on_device_state("pump-1", DeviceState.DOWN, 86400) == []
    assert kinds(engine.tick(86400 + 300)) == [("raised", "pump-comm")]
    assert kinds(engine.tick(86400 + 3600)) == [("raised", "meter-silent")]
    engine = restarted(engine, [COMM, STALE])
    assert engine.tick(90000) == []  # active ones stay active, no second raise
    assert kinds(engine.on_device_state("pump-1", DeviceState.OK, 90010)) == [
        ("cleared", "pump-comm")]


def test_unreadable_state_is_reported_not_fatal() -> None:
    engine = RuleEngine([LOW], {"v": 1, "alarms": {"vmc-b-low": {"raised": True}},
                                "rules": {}}, tz=UTC)
    assert engine.restore_problems and "vmc-b-low" in engine.restore_problems[0]
    assert RuleEngine([LOW], {"v": 99}, tz=UTC).restore_problems


def test_export_state_is_json_and_stable() -> None:
    engine = raised_low()
    state = engine.export_state()
    assert json.loads(json.dumps(state)) == state
    assert restarted(engine, [LOW, DOOR]).export_state()["alarms"] == state["alarms"]


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        RuleEngine([LOW, LOW])


def test_next_deadline_sleeps_until_the_work() -> None:
    engine = RuleEngine([LOW, DOOR], tz=UTC)
    assert engine.next_deadline() is None  # no time given yet
    engine.tick(0)
    assert engine.next_deadline() is None  # nothing timed
    pressure(engine, 40, 100)
    assert engine.next_deadline() == 700
    engine.on_reading(reading("garage/door", True, 200), 200)
    assert engine.next_deadline() == 500
    assert kinds(engine.tick(500)) == [("raised", "door-open")]
    assert engine.next_deadline() == 700
