"""Wire profile `homeassistant` end to end: a real agent polling the simulated Modbus building
publishes through a real mosquitto; what arrives is checked the way Home Assistant would use it.

The consumer side here is Home Assistant's published MQTT discovery format
(asyncapi/schemas/ha-discovery.json) and its template language: every value and availability
template of the discovery configs is rendered with Jinja2, the engine Home Assistant's templates
are, against the real state payloads. The device-based configs can be checked no other way: the
Home Assistant core that runs on this Python (2024.3) predates them; test_homeassistant_core.py
runs that core against the per-entity configs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jinja2
import pytest

from agent.sim.modbus_building import ModbusBuilding
from tests.broker import Mosquitto
from tests.commands.mqtt_backend import ROOT, agent_with_commands
from tests.integration.helpers import load, write_config
from tests.integration.test_schemas import assert_valid
from tests.observer import Observer, observing
from tests.wire.helpers import VMC_LOW, two_devices_config

TEMPLATES = jinja2.Environment(autoescape=False)  # noqa: S701 - templates for a JSON consumer


def render(template: str, payload: Any) -> str:
    return TEMPLATES.from_string(template).render(value_json=payload)


def ha_config(tmp_path: Path, broker: Mosquitto, modbus_port: int, *, writes: bool,
              profiles: tuple[str, ...] = ("native", "homeassistant")) -> Path:
    return two_devices_config(
        tmp_path, broker, modbus_port,
        mqtt={"profiles": list(profiles), "homeassistant": {"writes": writes}},
        rules=[VMC_LOW, {"id": "pump-comm", "type": "comm_lost", "device": "pump-1", "for": "5s"}])


def latest(observer: Observer, topic: str) -> dict[str, Any]:
    return next(m.body for m in reversed(observer.messages) if m.topic == topic)


def written_events(messages: list[Any]) -> list[dict[str, Any]]:
    return [m.body for m in messages if m.topic == f"{ROOT}/evt"
            and m.body.get("type") == "point.written"]


def discovery(observer: Observer) -> dict[str, dict[str, Any]]:
    return {m.topic: m.body for m in observer.messages if m.topic.startswith("homeassistant/")}


async def test_discovery_values_alarms_and_writes(tmp_path: Path, broker: Mosquitto,
                                                  modbus_building: tuple) -> None:
    sim, port = modbus_building
    config = load(ha_config(tmp_path, broker, port, writes=True))
    async with observing(broker.port, "#", client_id="ha-obs") as observer, \
            agent_with_commands(config) as (agent, _):
        await observer.wait_for(lambda ms: sum(m.topic == f"{ROOT}/ha/pump-1" for m in ms) >= 3
                                and any(m.topic == f"{ROOT}/ha/_alarms" for m in ms))
        configs = discovery(observer)
        assert set(configs) == {"homeassistant/device/gw-test/config",
                                "homeassistant/device/gw-test-vmc-a/config",
                                "homeassistant/device/gw-test-pump-1/config"}
        for body in configs.values():
            assert_valid("ha-discovery.json", body)
        vmc = configs["homeassistant/device/gw-test-vmc-a/config"]
        # Every value template of every entity, against the device's last state, gives what
        # the native telemetry message it was made from (same seq) says.
        native = {m.body["seq"]: m.body for m in observer.messages
                  if m.topic.startswith(f"{ROOT}/dev/") and m.topic.endswith("/tm")}
        for dev in ("vmc-a", "pump-1"):
            body = configs[f"homeassistant/device/gw-test-{dev}/config"]
            state = latest(observer, body["state_topic"])
            assert_valid("ha-state.json", state)
            source = {r["n"]: r.get("v", r.get("vb")) for r in native[state["seq"]]["e"]}
            assert state["v"] == source and state["ts"] == native[state["seq"]]["e"][0]["bt"]
            for name, cmp in body["cmps"].items():
                shown = render(cmp["value_template"], state)
                value = source[name]
                if isinstance(value, bool):
                    assert shown == ("ON" if value else "OFF"), (dev, name, shown)
                else:
                    assert float(shown) == pytest.approx(value), (dev, name, shown)
            # Available only while the gateway is online AND the device answers.
            for item in body["availability"]:
                seen = next(m for m in reversed(observer.messages) if m.topic == item["topic"]) \
                    if item["topic"].endswith("/state") else None
                if seen is not None:
                    assert render(item["value_template"], seen.body) == "online"
            assert (f"{ROOT}/ha/{dev}/availability", b"online") in observer.raw
        assert vmc["cmps"]["exhaust_pressure"]["device_class"] == "pressure"
        assert vmc["cmps"]["fan_enable"]["p"] == "switch"  # writable, writes: true
        assert vmc["cmps"]["pressure_setpoint"]["p"] == "number"
        # Alarms as problem binary sensors: the threshold alarm is raised.
        gateway = configs["homeassistant/device/gw-test/config"]
        alarms = latest(observer, f"{ROOT}/ha/_alarms")
        assert_valid("ha-alarms.json", alarms)
        assert render(gateway["cmps"]["alarm_vmc_low"]["value_template"], alarms) == "ON"
        assert render(gateway["cmps"]["alarm_pump_comm"]["value_template"], alarms) == "OFF"
        online = latest(observer, f"{ROOT}/state")
        assert render(gateway["cmps"]["online"]["value_template"], online) == "ON"

        # Writes from Home Assistant go through point.write: allowed, refused out of range.
        ha_set = f"{ROOT}/ha/vmc-a/pressure_setpoint/set"
        from tests.commands.mqtt_backend import backend  # noqa: PLC0415

        async with backend(broker.port) as peer:
            await peer.client.publish(ha_set, b"140", qos=1)
            await peer.client.publish(f"{ROOT}/ha/vmc-a/fan_enable/set", b"OFF", qos=1)
            await peer.client.publish(ha_set, b"999", qos=1)  # above the point's max: refused
            await peer.client.publish(ha_set, b"lots", qos=1)  # not a number: dropped
        await observer.wait_for(lambda ms: len(written_events(ms)) >= 2)
        written = written_events(observer.messages)
        assert {(w["n"], w["value"]) for w in written} == {("pressure_setpoint", 140),
                                                           ("fan_enable", False)}
        assert all(w["by"] == "homeassistant" for w in written)
        await asyncio.sleep(0.5)
        assert agent.uplink.wire.dropped == 2
        assert len(written_events(observer.messages)) == 2


async def test_without_writes_points_are_read_only_and_set_topics_are_not_heard(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple) -> None:
    sim, port = modbus_building
    config = load(ha_config(tmp_path, broker, port, writes=False))
    async with observing(broker.port, "#", client_id="ha-obs") as observer, \
            agent_with_commands(config) as (agent, _):
        await observer.wait_for(lambda ms: any(m.topic.endswith("gw-test-vmc-a/config")
                                               for m in ms))
        vmc = discovery(observer)["homeassistant/device/gw-test-vmc-a/config"]
        assert vmc["cmps"]["fan_enable"]["p"] == "binary_sensor"
        assert vmc["cmps"]["pressure_setpoint"]["p"] == "sensor"
        assert agent.uplink.wire.subscriptions() == []


async def test_native_only_publishes_nothing_else(tmp_path: Path, broker: Mosquitto,
                                                  modbus_building: tuple) -> None:
    _, port = modbus_building
    config = load(ha_config(tmp_path, broker, port, writes=False, profiles=("native",)))
    async with observing(broker.port, "#", client_id="ha-obs") as observer, \
            agent_with_commands(config):
        await observer.wait_for(lambda ms: sum(m.topic.endswith("/tm") for m in ms) >= 4)
    assert not [m for m in observer.messages if "/ha/" in m.topic or
                m.topic.startswith("homeassistant/")]


def test_a_config_without_native_or_with_an_unknown_profile_is_refused(tmp_path: Path) -> None:
    from agent.sdk.errors import ConfigError  # noqa: PLC0415

    for profiles, said in ((["homeassistant"], "native is always published"),
                           (["native", "homie"], "profiles")):
        path = write_config(tmp_path, broker_port=1, modbus_port=1, devices=[],
                            mqtt={"profiles": profiles})
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert any(said in p and "mqtt.profiles" in p for p in caught.value.problems), \
            caught.value.problems
