"""Rule parameters: impossible ones are refused with a clear message, at the right key and
line of the config file (`batigate config check`)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent.config import loader as config
from agent.sdk.errors import ConfigError
from rules.engine import RuleEngine
from tests.rules.harness import rule


def refused(**item: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        rule(**item)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


BAD = [
    # (rule, key the error must point at, words the message must contain)
    ({"type": "threshold", "point": "a/p", "below": 50, "clear_above": 45},
     ("clear_above",), "must be at or above below"),
    ({"type": "threshold", "point": "a/p", "above": 50, "clear_below": 55},
     ("clear_below",), "must be at or below above"),
    ({"type": "threshold", "point": "a/p", "above": 50, "clear_above": 55},
     ("clear_above",), "goes with below"),
    ({"type": "threshold", "point": "a/p"}, (), "exactly one of below or above"),
    ({"type": "threshold", "point": "a/p", "below": 1, "above": 5}, (), "exactly one"),
    ({"type": "threshold", "point": "a/p", "below": 50, "for": "-5m"}, ("for",), "duration"),
    ({"type": "threshold", "point": "a/p", "below": 50, "for": 0}, ("for",), "greater than zero"),
    ({"type": "threshold", "point": "a/p", "below": ".nan"}, ("below",), "number"),
    ({"type": "threshold", "point": "a/p", "below": 50, "above_": 3}, ("above_",), "Extra"),
    ({"type": "threshold", "point": "vmc-b", "below": 50}, ("point",), "write it device/point"),
    ({"type": "held", "point": "a/p", "value": True}, ("for",), "required"),
    ({"type": "stale", "point": "a/p", "for": "soon"}, ("for",), "not a duration"),
    ({"type": "stale", "point": "A/*", "for": "1h"}, ("point",), "device/point or device/*"),
    ({"type": "comm_lost", "device": "pump-1", "for": "-1s"}, ("for",), "duration"),
    ({"type": "counter_rate", "point": "a/p"}, (), "max_starts"),
    ({"type": "counter_rate", "point": "a/p", "max_starts": 0}, ("max_starts",), "greater"),
    ({"type": "counter_rate", "point": "a/p", "max_on": "1h", "window": "1h"}, (),
     "window only counts starts"),
    ({"type": "leak", "point": "a/p"}, (), "night"),
    ({"type": "leak", "point": "a/p", "night": "05:00-05:00"}, ("night",), "not a window"),
    ({"type": "leak", "point": "a/p", "night": "25:00-05:00"}, ("night",), "hours go 00-23"),
    ({"type": "leak", "point": "a/p", "night": "night"}, ("night",), "HH:MM-HH:MM"),
    ({"type": "leak", "point": "a/p", "for": "24h", "min_flow": -1}, ("min_flow",), "greater"),
    ({"type": "leak", "point": "a/p", "for": "24h", "min_flow": "5 kWh"}, ("min_flow",),
     "not convertible to m3/s"),
    ({"type": "consumption", "point": "a/p", "k": 0.8}, ("k",), "above 1"),
    ({"type": "consumption", "point": "a/p", "k": 2, "days": 1}, ("days",), "greater"),
    ({"type": "availability", "point": "a/p", "max_percent": 10}, (), "needs a window"),
    ({"type": "availability", "point": "a/p", "max_percent": 120, "window": "1d"},
     ("max_percent",), "less than 100"),
    ({"type": "availability", "point": "a/p"}, (), "max_down"),
    ({"type": "bad_quality", "point": "a/p", "latch": "maybe"}, ("latch",), "boolean"),
]


@pytest.mark.parametrize(("item", "loc", "words"), BAD,
                         ids=[f"{b[0]['type']}-{i}" for i, b in enumerate(BAD)])
def test_impossible_parameters_are_refused(item: dict[str, Any], loc: tuple[Any, ...],
                                           words: str) -> None:
    errors = refused(id="r1", **item)
    assert any(got_loc == loc and words in msg for got_loc, msg in errors), errors


def test_quantities_with_units_are_converted() -> None:
    leak = rule(id="l", type="leak", point="m/v", for_="24h", min_flow="18 l/h")
    assert leak.min_flow == pytest.approx(5e-6)  # type: ignore[attr-defined]
    cons = rule(id="c", type="consumption", point="m/v", k=3, min_volume="500 l")
    assert cons.min_volume == pytest.approx(0.5)  # type: ignore[attr-defined]


def test_for_is_accepted_by_name_and_alias() -> None:
    by_alias = rule(id="t", type="threshold", point="a/p", below=1, **{"for": "10m"})
    by_name = rule(id="t", type="threshold", point="a/p", below=1, for_=600)
    assert by_alias == by_name and by_alias.for_ == 600  # type: ignore[attr-defined]


FILE = """\
gateway: {id: gw-0042, site: res-les-pins}
mqtt: {host: broker.example.org}
buses:
  - {id: rs485-1, driver: modbus-rtu, port: /dev/ttyUSB0, baudrate: 9600, parity: E}
devices:
  - id: vmc-b
    bus: rs485-1
    address: 17
    points:
      - {name: exhaust_pressure, register: holding:0, type: int16, scale: 0.1, unit: Pa}
      - {name: fan_running, register: discrete:3, type: bool}
      - {name: door, register: discrete:4, type: bool}
      - {name: volume, register: holding:10, type: uint32, unit: m3}
rules:
"""

GOOD_RULES = """\
  - {id: vmc-b-low-depression, type: threshold, point: vmc-b/exhaust_pressure,
     below: 50, for: 10m, clear_above: 60, severity: major}
  - {id: door-open, type: held, point: vmc-b/door, value: true, for: 15m, severity: minor}
  - {id: silent, type: stale, point: vmc-b/*, for: 1h}
  - {id: comm, type: comm_lost, device: vmc-b, for: 5m}
  - {id: starts, type: counter_rate, point: vmc-b/fan_running, max_starts: 6, window: 1h,
     max_on: 2h}
  - {id: leak, type: leak, point: vmc-b/volume, night: "01:00-05:00", min_flow: 0}
  - {id: usage, type: consumption, point: vmc-b/volume, k: 3, days: 14}
  - {id: avail, type: availability, point: vmc-b/fan_running, down_value: false,
     max_down: 4h, max_percent: 5, window: 30d}
  - {id: quality, type: bad_quality, point: vmc-b/exhaust_pressure, for: 10m}
"""


def test_every_rule_type_loads_from_a_config_file(tmp_path: Any) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(FILE + GOOD_RULES)
    loaded = config.load(path)
    assert [r.type for r in loaded.rules] == ["threshold", "held", "stale", "comm_lost",
                                              "counter_rate", "leak", "consumption",
                                              "availability", "bad_quality"]
    engine = RuleEngine(loaded.rules)
    assert engine.tick(0) == [] and engine.active() == []


def problems(tmp_path: Any, rules: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(FILE + rules)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    return "\n".join(caught.value.problems).replace(str(path), "FILE")


def test_config_check_names_file_line_and_key(tmp_path: Any) -> None:
    text = problems(tmp_path, """\
  - {id: low, type: threshold, point: vmc-b/exhaust_pressure, below: 50,
     clear_above: 40}
  - id: neg
    type: held
    point: vmc-b/door
    value: true
    for: -10m
  - id: leak
    type: leak
    point: vmc-b/volume
    night: "05:00-05:00"
""")
    assert "FILE:16: rules[0].clear_above: clear_above (40) is below `below` (50)" in text
    assert "FILE:21: rules[1].for: '-10m' is not a duration" in text
    assert "FILE:25: rules[2].night: '05:00-05:00' is not a window" in text


def test_config_check_refuses_unknown_points_and_devices(tmp_path: Any) -> None:
    text = problems(tmp_path, """\
  - {id: low, type: threshold, point: vmc-b/exhaust_pressure, below: 50}
  - id: ghost
    type: threshold
    point: vmc-b/no_such_point
    below: 3
  - {id: silent, type: stale, point: vmc-c/*, for: 1h}
  - {id: gone, type: comm_lost, device: vmc-x, for: 5m}
""")
    assert "FILE:18: rules[1].point: unknown point 'vmc-b/no_such_point'" in text
    assert "FILE:20: rules[2].point: unknown device 'vmc-c' in 'vmc-c/*'" in text
    assert "FILE:21: rules[3].device: unknown device 'vmc-x' in 'vmc-x/*'" in text
