"""What the profiles announce when a config apply removes a device (the agent's `rebirth` after
a live apply calls `announce` again with the new config): Home Assistant gets an empty retained
config (its 'delete'), ThingsBoard a disconnect. And what a device state row becomes."""

from __future__ import annotations

import json
from pathlib import Path

from agent import config as config_mod
from agent import supervisor
from agent.clock import SystemClock
from agent.outbox import PRIO_EVENT
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
    from agent.config_models import PointConfig  # noqa: PLC0415
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
