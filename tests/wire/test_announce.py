"""What the profiles announce when a config apply removes a device (the agent's `rebirth` after
a live apply calls `announce` again with the new config): Home Assistant gets an empty retained
config (its 'delete'), ThingsBoard a disconnect. And what a device state row becomes."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import loader as config_mod
from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.store.outbox import PRIO_EVENT
from agent.sim.modbus_building import DEMO_POINTS
from tests.integration.helpers import write_config


def test_a_removed_device_is_deleted_from_home_assistant_and_disconnected_from_thingsboard(
        tmp_path: Path) -> None:
    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "points": DEMO_POINTS[1]},
               {"id": "pump-1", "bus": "lan", "address": 2, "points": DEMO_POINTS[2]}]
    mqtt = {"profiles": ["native", "homeassistant", "thingsboard"]}
    agent = supervisor.Agent(config_mod.load(write_config(
        tmp_path, broker_port=1, modbus_port=1, devices=devices, mqtt=mqtt)), SystemClock())
    try:
        wire = agent.uplink.wire
        first = wire.announce()
        assert {t for t, p, r in first if p == b""} == set()
        assert sorted(json.loads(p)["device"] for t, p, _ in first
                      if t == "v1/gateway/connect") == ["gw-test/pump-1", "gw-test/vmc-a"]
        # What Agent.apply_config does before its rebirth: the new config in force.
        agent.config = config_mod.load(write_config(
            tmp_path, broker_port=1, modbus_port=1, devices=devices[:1], mqtt=mqtt))
        second = wire.announce()
        assert [(t, r) for t, p, r in second if p == b""] == [
            ("homeassistant/device/gw-test-pump-1/config", True)]
        assert [json.loads(p) for t, p, _ in second if t == "v1/gateway/disconnect"] == [
            {"device": "gw-test/pump-1"}]
        assert [t for t, p, _ in wire.announce() if p == b""] == []  # said once

        # A device state row: availability for Home Assistant, attributes for ThingsBoard.
        agent.outbox.enqueue("dev/vmc-a/state", {"state": "down", "since": 5.0,
                                                 "reason": "timeout"},
                             prio=PRIO_EVENT, sess=1, ts=5.0)
        agent.outbox.commit()
        [row] = [m for m in agent.outbox.peek(10) if m.topic == "dev/vmc-a/state"]
        out = {t: p for t, p, _ in wire.render(row, hist=False)}
        assert out["bgw/v1/site-a/gw-test/ha/vmc-a/availability"] == b"offline"
        assert json.loads(out["v1/gateway/attributes"]) == {"gw-test/vmc-a": {
            "state": "down", "state_since": 5.0, "state_reason": "timeout"}}
    finally:
        agent.outbox.close()


def test_a_failing_profile_skips_its_message_and_never_holds_the_row(tmp_path: Path,
                                                                     caplog: object) -> None:
    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "points": DEMO_POINTS[1]}]
    agent = supervisor.Agent(config_mod.load(write_config(
        tmp_path, broker_port=1, modbus_port=1, devices=devices,
        mqtt={"profiles": ["native", "homeassistant", "thingsboard"]})), SystemClock())
    try:
        wire = agent.uplink.wire

        class Broken:  # a profile with a bug, first in line
            def render(self, message: object, body: object, hist: bool) -> list:
                raise KeyError("bug")

        wire.profiles.insert(0, Broken())
        agent.outbox.enqueue("dev/vmc-a/tm", {"e": [{"bn": "urn:dev:bgw:gw-test:vmc-a:",
                                                     "bt": 5.0, "n": "fan_speed", "v": 3}]},
                             prio=PRIO_EVENT, sess=1, ts=5.0)
        agent.outbox.commit()
        [row] = agent.outbox.peek(10)
        topics = [t for t, _, _ in wire.render(row, hist=False)]
        assert topics == ["bgw/v1/site-a/gw-test/ha/vmc-a", "v1/gateway/telemetry"]
        assert wire.failures == 1
    finally:
        agent.outbox.close()


def test_meters_get_the_classes_the_energy_and_water_dashboards_accept() -> None:
    from agent.sdk.config import PointConfig  # noqa: PLC0415
    from agent.wire.homeassistant import sensor_options  # noqa: PLC0415
    from tests.wire.test_homeassistant import render  # noqa: PLC0415

    def options(**point: object) -> dict[str, object]:
        return sensor_options(PointConfig(name="x", **point))

    water = options(unit="m3", kind="counter")
    assert (water["device_class"], water["state_class"], water["unit_of_measurement"]) == (
        "water", "total_increasing", "m³")
    gas = options(unit="m3", kind="counter", haystack=["gas", "volume"])
    assert gas["device_class"] == "gas"
    heat = options(unit="kWh", kind="counter")  # stored in J (SenML); shown in kWh
    assert (heat["device_class"], heat["state_class"], heat["unit_of_measurement"]) == (
        "energy", "total_increasing", "kWh")
    assert render(heat["value_template"], {"v": {"x": 7.2e6}}) == "2.0"
    assert render(heat["value_template"], {"v": {"x": None}}) == "None"  # unknown in HA
    flow = options(unit="m3/h")  # stored in m3/s; shown in m³/h
    assert (flow["device_class"], flow["state_class"]) == ("volume_flow_rate", "measurement")
    assert float(render(flow["value_template"], {"v": {"x": 0.001}})) == 3.6
    assert options(unit="°C")["unit_of_measurement"] == "°C"


def test_entity_discovery_gives_each_component_its_own_classic_config(tmp_path: Path) -> None:
    """`discovery: entity` (Home Assistant before 2024.11): the same entities as the device
    configs, one retained config each under {prefix}/{component}/{node}/{key}/config, carrying
    the options the device config shares; a removed device's entities are each deleted."""
    from tests.integration.test_schemas import assert_valid  # noqa: PLC0415

    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "points": DEMO_POINTS[1]},
               {"id": "pump-1", "bus": "lan", "address": 2, "points": DEMO_POINTS[2]}]
    rules = [{"id": "vmc-low", "type": "threshold", "point": "vmc-a/exhaust_pressure",
              "below": 10, "severity": "major"}]

    def load(mqtt: dict, devices: list) -> config_mod.Config:
        return config_mod.load(write_config(tmp_path, broker_port=1, modbus_port=1,
                                            devices=devices, mqtt=mqtt, rules=rules))

    device_mode = {"profiles": ["native", "homeassistant"]}
    entity_mode = {"profiles": ["native", "homeassistant"],
                   "homeassistant": {"discovery": "entity", "writes": True}}
    agent = supervisor.Agent(load(device_mode, devices), SystemClock())
    try:
        [ha] = [p for p in agent.uplink.wire.profiles if type(p).__name__ == "HomeAssistant"]
        assert all(t.startswith("homeassistant/device/") for t, _, _ in ha.announce())
        ha.announced = set()
        agent.config = load(entity_mode, devices)
        announced = {t: json.loads(p) for t, p, _ in ha.announce()}
        vmc = ha.device_config(agent.config.devices[0])
        assert len(announced) == 1 + 1 + 8 + 8  # online, one alarm, the points of both devices
        for key, component in vmc["cmps"].items():
            body = announced[f"homeassistant/{component['p']}/gw-test-vmc-a/{key}/config"]
            assert_valid("ha-entity-discovery.json", body)
            assert body["state_topic"] == vmc["state_topic"] == "bgw/v1/site-a/gw-test/ha/vmc-a"
            assert body["availability"] == vmc["availability"]
            assert body["availability_mode"] == "all" and body["dev"] == vmc["dev"]
            assert {k: v for k, v in component.items() if k != "p"}.items() <= body.items()
        assert "homeassistant/switch/gw-test-vmc-a/fan_enable/config" in announced
        assert "homeassistant/number/gw-test-vmc-a/pressure_setpoint/config" in announced
        online = announced["homeassistant/binary_sensor/gw-test/online/config"]
        assert online["state_topic"] == "bgw/v1/site-a/gw-test/state"  # its own, not shared
        alarm = announced["homeassistant/binary_sensor/gw-test/alarm_vmc_low/config"]
        assert alarm["device_class"] == "problem" and alarm["state_topic"].endswith("/_alarms")
        for body in announced.values():
            assert_valid("ha-entity-discovery.json", body)

        agent.config = load(entity_mode, devices[:1])
        deleted = sorted(t for t, p, r in ha.announce() if p == b"" and r)
        assert len(deleted) == 8 and all("/gw-test-pump-1/" in t for t in deleted)
    finally:
        agent.outbox.close()
