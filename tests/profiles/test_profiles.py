"""Device profiles: merge and override rules, default alert rules, every shipped file validates."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import loader as config

from agent.config import profiles
from agent.sdk.errors import ConfigError
from agent.sim.modbus_building import DEMO_POINTS

HEADER = """\
gateway: {id: gw-0042, site: res-les-pins}
mqtt: {host: broker.example.org, tls: false}
buses:
  - {id: lan, driver: modbus-tcp, host: 192.0.2.10, port: 502}
  - {id: gpio0, driver: gpio, chip: /dev/gpiochip0}
  - {id: meters, driver: mbus, port: /dev/ttyUSB1}
  - {id: radio, driver: wmbus, receiver: im871a, port: /dev/ttyUSB2}
"""

BUS_OF = {"modbus": "lan", "gpio": "gpio0", "mbus": "meters", "wmbus": "radio"}


def device_for(name: str, index: int) -> dict[str, Any]:
    """A device entry for profile `name`, with what the site must add (GPIO line numbers)."""
    profile = profiles.load(name)
    entry: dict[str, Any] = {"id": f"dev-{index}", "bus": BUS_OF[profile["driver"]],
                             "profile": name}
    if profile["driver"] == "modbus":
        entry["address"] = index + 1
    if profile["driver"] == "mbus":
        entry["address"] = index + 1
    if profile["driver"] == "wmbus":
        entry["address"] = f"{index + 1:08d}"
    if profile["driver"] == "gpio":
        inputs = [p for p in profile["points"] if "of" not in p]
        entry["points"] = [{"name": p["name"], "line": 20 + n} for n, p in enumerate(inputs)]
    return entry


def write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "gateway.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def load_devices(tmp_path: Path, devices_yaml: str) -> config.Config:
    text = HEADER + "devices:\n" + textwrap.indent(textwrap.dedent(devices_yaml), "  ")
    return config.load(write(tmp_path, text))


def test_the_shipped_profiles() -> None:
    assert set(profiles.installed()) >= {
        "vmc-caisson", "relevage-pump", "lift-box", "door-contact", "water-meter", "heat-meter",
        "caladair-ecoblue", "wilo-control-ec-l", "grundfos-ciu-200"}


@pytest.mark.parametrize("name", profiles.installed())
def test_every_profile_validates_with_its_rules_through_a_real_config_file(
        tmp_path: Path, name: str) -> None:
    entry = device_for(name, 0)
    data = yaml.safe_load(HEADER)
    data["devices"] = [entry]
    data["rules"] = profiles.rules_for(entry)
    cfg = config.load(write(tmp_path, data))
    device = cfg.device("dev-0")
    profile = profiles.load(name)
    assert [p.name for p in device.points] == [p["name"] for p in profile["points"]]
    assert len(cfg.rules) == len(profile.get("rules", {}))
    for point, declared in zip(device.points, profile["points"], strict=True):
        assert point.kind == declared.get("kind")
        assert point.brick == declared.get("brick")
        assert point.haystack == declared.get("haystack")
        assert point.kind in {"sensor", "cmd", "sp", "alarm", "status", "counter"}


def test_merge_override_add_and_poll(tmp_path: Path) -> None:
    cfg = load_devices(tmp_path, """\
        - id: vmc-b
          bus: lan
          address: 17
          profile: vmc-caisson
          poll: 10s
          points:
            - {name: exhaust_pressure, scale: 1, register: "input:7"}
            - {name: duct_temp, register: "input:3", type: int16, scale: 0.1, unit: Cel}
        - {id: vmc-c, bus: lan, address: 18, profile: vmc-caisson}
        """)
    vmc_b, vmc_c = cfg.device("vmc-b"), cfg.device("vmc-c")
    assert vmc_b.poll == 10.0 and vmc_c.poll == 30.0  # the device's poll beats the profile's
    pressure = vmc_b.points[0]
    assert pressure.name == "exhaust_pressure"
    # Overridden fields changed, the others are the profile's.
    assert (pressure.scale, str(pressure.register)) == (1.0, "input:7")  # type: ignore[attr-defined]
    assert pressure.unit == "Pa" and pressure.brick == "brick:Exhaust_Air_Static_Pressure_Sensor"
    assert vmc_b.points[-1].name == "duct_temp" and len(vmc_b.points) == len(vmc_c.points) + 1
    assert str(vmc_c.points[0].register) == "input:1"  # type: ignore[attr-defined]


def test_the_entry_and_the_cached_profile_are_not_modified() -> None:
    entry = {"id": "v", "bus": "lan", "address": 1, "profile": "vmc-caisson",
             "points": [{"name": "exhaust_pressure", "scale": 1}]}
    merged = profiles.apply(entry)
    merged["points"][0]["unit"] = "mbar"
    assert entry["points"] == [{"name": "exhaust_pressure", "scale": 1}]
    assert profiles.load("vmc-caisson")["points"][0]["unit"] == "Pa"
    assert profiles.apply({"id": "x", "bus": "lan"}) == {"id": "x", "bus": "lan"}


def test_unknown_profile_is_reported_at_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_devices(tmp_path, """\
            - {id: vmc-b, bus: lan, address: 17, profile: vmc-caison}
            """)
    [problem] = caught.value.problems
    assert ":9: devices[0].profile: unknown profile 'vmc-caison'; installed: " in problem
    assert "vmc-caisson" in problem


def test_a_gpio_input_without_its_line_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_devices(tmp_path, "- {id: skydome, bus: gpio0, profile: door-contact}\n")
    assert any("devices[0].points[0]" in p and "needs `line:`" in p
               for p in caught.value.problems)


def test_a_profile_on_a_bus_of_another_family() -> None:
    with pytest.raises(ValueError, match="profile 'door-contact' is for gpio devices"):
        profiles.apply({"id": "d", "bus": "lan", "profile": "door-contact"}, driver="modbus-tcp")
    assert profiles.apply({"id": "d", "bus": "g", "profile": "door-contact"}, driver="gpio")


def test_default_rules_are_complete_rule_entries() -> None:
    rules = {r["id"]: r for r in profiles.default_rules("vmc-b", "vmc-caisson")}
    assert rules["vmc-b-low-depression"] == {
        "id": "vmc-b-low-depression", "type": "threshold", "point": "vmc-b/exhaust_pressure",
        "below": 50, "clear_above": 60, "for": "10m", "severity": "major"}
    assert rules["vmc-b-comm-lost"]["device"] == "vmc-b"


def test_rules_can_be_disabled_or_tuned(tmp_path: Path) -> None:
    entry = {"id": "vmc-b", "profile": "vmc-caisson",
             "rules": {"low-depression": {"below": 40, "clear_above": 45},
                       "filter-clogged": False, "fan-stopped": True}}
    rules = {r["id"]: r for r in profiles.rules_for(entry)}
    assert "vmc-b-filter-clogged" not in rules and "vmc-b-fan-stopped" in rules
    assert rules["vmc-b-low-depression"]["below"] == 40
    assert rules["vmc-b-low-depression"]["for"] == "10m"  # untouched settings stay
    # The `rules:` key is checked, then left out of the device entry the driver validates.
    cfg = load_devices(tmp_path, """\
        - id: vmc-b
          bus: lan
          address: 17
          profile: vmc-caisson
          rules: {filter-clogged: false}
        """)
    assert cfg.device("vmc-b").profile == "vmc-caisson"


@pytest.mark.parametrize(("rules", "message"), [
    ("{low-pressure: false}", "rules.low-pressure: profile 'vmc-caisson' has no rule "
                              "'low-pressure'; its rules: comm-lost, fan-stopped"),
    ("{low-depression: 40}", "rules.low-depression: write false to disable it"),
    ("{low-depression: {point: exhaust_pressure}}", "point cannot be overridden"),
    ("[low-depression]", "rules: write a mapping of rule name to false"),
])
def test_bad_rules_overrides(tmp_path: Path, rules: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_devices(tmp_path, f"- {{id: v, bus: lan, address: 1, profile: vmc-caisson, "
                               f"rules: {rules}}}\n")
    [problem] = caught.value.problems
    assert "devices[0].rules: " in problem and message in problem


def test_rules_without_a_profile_are_refused() -> None:
    with pytest.raises(ValueError, match="this device has no `profile:`"):
        profiles.apply({"id": "v", "bus": "lan", "rules": {"x": False}})


@pytest.mark.parametrize(("profile", "unit"), [("vmc-caisson", 1), ("relevage-pump", 2)])
def test_generic_profiles_match_the_simulated_building(profile: str, unit: int) -> None:
    points = {p["name"]: p for p in profiles.load(profile)["points"]}
    for demo in DEMO_POINTS[unit]:
        mapped = points[demo["name"]]
        for key, value in demo.items():
            assert mapped.get(key) == value, (demo["name"], key)


def test_a_radio_meter_takes_the_wired_meter_profiles(tmp_path: Path) -> None:
    loaded = load_devices(tmp_path, """\
        - {id: flat-12, bus: radio, address: "12345678", profile: water-meter, interval: 16s}
        - {id: hca-12, bus: radio, address: 12345679, profile: heat-cost-allocator}
        """)
    flat, hca = loaded.devices
    assert [p.name for p in flat.points][:2] == ["volume", "flow"]
    assert flat.silence == 64.0  # 4 intervals unheard
    assert hca.address == "12345679" and hca.points[0].record.quantity == "hca_units"
    with pytest.raises(ConfigError, match="profile 'heat-cost-allocator' is for wmbus"):
        load_devices(tmp_path, "- {id: m, bus: meters, address: 3, profile: heat-cost-allocator}\n")
