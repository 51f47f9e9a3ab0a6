"""A third-party rule type that raises, in a running agent: the rule is disabled and reported
once on `evt` and in `health`; the poller, the other rules and the agent keep running."""

from __future__ import annotations

from pathlib import Path

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from tests.broker import Mosquitto
from tests.integration.helpers import load, running_agent, write_config
from tests.observer import observing
from tests.plugins import installed
from tests.rules.brittle import BRITTLE

ROOT = "bgw/v1/site-a/gw-test"


async def test_a_raising_rule_is_disabled_and_the_agent_runs_on(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple[ModbusBuilding, int]) -> None:
    _, modbus_port = modbus_building
    pump = {"id": "pump-1", "bus": "lan", "address": 2, "poll": "200ms", "timeout": "300ms",
            "points": DEMO_POINTS[2]}
    rules = [{"id": "buggy", "type": "brittle", "point": "pump-1/water_level",
              "fail_in": "reading", "above": -1000},
             {"id": "level-seen", "type": "threshold", "point": "pump-1/water_level",
              "above": -1000, "severity": "info"}]
    with installed(tmp_path / "site", dist="brittle_rules", group="batigate.rules",
                   entries={"brittle": "brittle_rule:BrittleRule"},
                   modules={"brittle_rule": BRITTLE}):
        config = load(write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                                   devices=[pump], rules=rules))
        async with observing(broker.port, f"{ROOT}/#") as observer, \
                running_agent(config) as agent:
            await observer.wait_for(lambda _: any(
                b.get("type") == "alarm.raised" for b in observer.bodies("/evt")))
            polls = agent.pollers["pump-1"].stats.polls
            # several more polls, each of which would have raised in the rule again
            await observer.wait_for(lambda _: agent.pollers["pump-1"].stats.polls >= polls + 5)
            health = agent.health()
            state = agent.pollers["pump-1"].state.value
            tm_before = len(observer.bodies("pump-1/tm"))
            await observer.wait_for(lambda _: len(observer.bodies("pump-1/tm")) > tm_before + 2)
            # readings still flow: the poller was not ended by the rule (before the boundary,
            # the exception left the poller, the TaskGroup, then the process)
    events = observer.bodies("/evt")
    disabled = [e for e in events if e["type"] == "rule.disabled"]
    assert len(disabled) == 1, disabled
    assert disabled[0]["rule"] == "buggy" and disabled[0]["rule_type"] == "brittle"
    assert "ZeroDivisionError" in disabled[0]["reason"]
    assert [e["alarm"] for e in events if e["type"] == "alarm.raised"] == ["level-seen"]
    assert list(health["rules"]["disabled"]) == ["buggy"]
    assert state == "ok"
