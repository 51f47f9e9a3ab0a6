"""The leak rule on billing's derived data: "no hour of zero flow for 3 days" (a running toilet),
from hourly flows derived from the index, with the real rule engine and a config the loader
checks (the derived point `hour_flow` is a point a rule may name)."""

from __future__ import annotations

import pytest

from agent.config import loader as config_mod
from agent.sdk.errors import ConfigError
from rules.engine import RuleEngine
from tests.billing.helpers import PARIS, Rig, paris

CONFIG = """
gateway: {id: gw-1, site: res-test}
mqtt: {host: 127.0.0.1, tls: false}
buses: [{id: meters, driver: mbus, port: "socket://127.0.0.1:1"}]
devices:
  - {id: wm-a011, bus: meters, address: 1, dwelling: A-011, medium: cold_water}
  - {id: pump, bus: meters, address: 2}
rules:
  - {id: a011-running-toilet, type: leak, point: %s, for: 3d, severity: minor}
"""


def raised(rig: Rig) -> list[dict]:  # type: ignore[type-arg]
    conf = config_mod.parse(CONFIG % "wm-a011/hour_flow")
    engine = RuleEngine(conf.rules, tz=PARIS)
    events = []
    for reading in rig.derived:
        events += [e.as_dict() for e in engine.on_reading(reading, reading.ts)]
    return events


def test_the_derived_point_is_known_only_on_a_volume_meter() -> None:
    config_mod.parse(CONFIG % "wm-a011/hour_flow")
    with pytest.raises(ConfigError, match="unknown point 'pump/hour_flow'"):
        config_mod.parse(CONFIG % "pump/hour_flow")


@pytest.mark.parametrize("leak_lph", [0.0, 4.0])
def test_no_hour_of_zero_flow_for_three_days(leak_lph: float) -> None:
    start = paris(2026, 11, 2, 12) + 7
    rig = Rig(start)
    rig.meter.leak_lph = leak_lph
    rig.run(start, paris(2026, 11, 6, 18), 900.0)
    flows = [r.value for r in rig.derived]
    assert len(flows) >= 24 * 4 - 2 and all(r.unit == "m3/s" for r in rig.derived)
    events = raised(rig)
    if leak_lph:
        assert min(flows) >= leak_lph / 1000 / 3600 * 0.9  # never an hour without water
        assert [e["type"] for e in events] == ["alarm.raised"]
        assert events[0]["point"] == "hour_flow" and events[0]["device"] == "wm-a011"
        assert events[0]["ts"] - events[0]["since"] >= 3 * 86400
    else:
        assert min(flows) == 0  # the nights are dry
        assert events == []
