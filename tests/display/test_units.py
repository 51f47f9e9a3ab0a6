"""Human units: what a person reads per quantity, with its rounding, in both languages; a point's
declared `display_unit:`; and the dashboard's screen fitting 80×24 whatever the site's size."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import loader as config_mod
from agent.display.dashboard import lines
from agent.display.units import age, human
from agent.sdk.errors import ConfigError
from tests.cli.helpers import write_config


@pytest.mark.parametrize(("value", "unit", "en", "fr"), [
    # the examples: energy, run time and flow as the demo used to print them
    (90000169200, "J", ("25,000", "kWh"), ("25 000", "kWh")),
    (54830000.0, "s", ("634.6", "d"), ("634,6", "j")),
    (7.944e-05, "m3/s", ("286", "l/h"), ("286", "l/h")),
    (21.456, "Cel", ("21.5", "°C"), ("21,5", "°C")),
    (3.6e12, "J", ("1,000.0", "MWh"), ("1 000,0", "MWh")),  # past 100,000 kWh: MWh
    (1.6667e-6, "m3/s", ("6.0", "l/h"), ("6,0", "l/h")),  # a slow leak keeps its decimal
    (0.01, "m3/s", ("36.00", "m3/h".replace("3", "³")), ("36,00", "m³/h")),
    (152.34, "m3", ("152.340", "m³"), ("152,340", "m³")),  # a meter index to the litre
    (45.0, "s", ("45", "s"), ("45", "s")),
    (5400.0, "s", ("90", "min"), ("90", "min")),
    (121.5, "Pa", ("122", "Pa"), ("122", "Pa")),
    (2400.0, "W", ("2.40", "kW"), ("2,40", "kW")),
    (True, None, ("yes", ""), ("oui", "")),
    (None, "Pa", ("—", ""), ("—", "")),
    (3.0, None, ("3", ""), ("3", "")),  # a floor number, not 3.00
])
def test_human_units(value: object, unit: str, en: tuple[str, str], fr: tuple[str, str]) -> None:
    assert human(value, unit, lang="en") == en
    assert human(value, unit, lang="fr") == fr


def test_declared_display_unit_wins() -> None:
    assert human(7.944e-05, "m3/s", "m3/h", lang="en") == ("0.29", "m³/h")
    assert human(90000169200, "J", "MWh", lang="fr") == ("25,0", "MWh")
    assert human(150000.0, "Pa", "bar", lang="en") == ("1.50", "bar")


def test_ages() -> None:
    assert age(12, "en") == "12 s" and age(600, "en") == "10 min"
    assert age(3 * 86400, "fr") == "3,0 j" and age(None, "fr") == "jamais"


def test_a_display_unit_of_another_quantity_is_a_config_error(tmp_path: Path) -> None:
    bus = {"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1", "port": 1502}
    point = {"name": "flow", "register": "holding:0", "type": "uint16", "unit": "l/h"}
    good = write_config(tmp_path, buses=[bus], devices=[{
        "id": "m", "bus": "lan", "address": 1, "points": [{**point, "display_unit": "m3/h"}]}])
    assert config_mod.load(good).devices[0].points[0].display_unit == "m3/h"
    bad = write_config(tmp_path, buses=[bus], devices=[{
        "id": "m", "bus": "lan", "address": 1, "points": [{**point, "display_unit": "kWh"}]}])
    with pytest.raises(ConfigError) as err:
        config_mod.load(bad)
    (problem,) = err.value.problems
    assert problem.startswith(f"{bad}:") and "devices[0].points[0].display_unit:" in problem
    assert "'kWh' measures J" in problem and "m3/s" in problem


def _snapshot(devices: int, alarms: int) -> dict[str, object]:
    return {
        "gw": "gw-0042", "site": "res-les-pins", "sess": 3, "uptime": 4000.0, "ts": 1000.0,
        "clock_synced": True,
        "broker": {"host": "broker.example.org", "port": 8883, "connected": False},
        "outbox": {"depth": 1200, "oldest_age": 7300.0, "dropped": 0},
        "buses": {"lan": {"requests": 10, "timeouts": 1, "exceptions": 0, "garbage": 0}},
        "alarms": [{"alarm": f"a-{i}", "severity": "major", "device": "vmc",
                    "point": "exhaust_pressure", "value": 20.0, "unit": "Pa",
                    "raised_at": 900.0} for i in range(alarms)],
        "devices": [{"id": f"device-with-a-long-name-{i}", "state": "ok", "points": [
            {"n": "energy_with_a_long_name", "v": 9e10, "u": "J"},
            {"n": "volume", "v": 1234.5, "u": "m3"}]} for i in range(devices)],
    }


@pytest.mark.parametrize(("devices", "alarms"), [(3, 0), (60, 0), (60, 30), (1, 40)])
def test_the_screen_fits_80_by_24(devices: int, alarms: int) -> None:
    from rich.text import Text

    screen = lines(_snapshot(devices, alarms), 80, 24, "en")
    assert len(screen) <= 24
    assert all(Text.from_markup(line).cell_len <= 80 for line in screen)
    plain = "\n".join(Text.from_markup(line).plain for line in screen)
    assert "NOT connected" in plain and "outbox 1200 msg, oldest 2.0 h" in plain
    assert "Ctrl-C stops" in screen[-1]
    if devices > 15:
        assert "more device(s)" in plain
    if alarms:
        assert "a-0" in plain and "for 2 min" in plain  # raised 100 s ago
    if alarms > 10:
        assert "more alarm(s)" in plain and "device-with-a-" in plain  # devices keep room
