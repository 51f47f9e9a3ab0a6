"""Wire profile `homeassistant` against a real Home Assistant core (tests/wire/ha_core.py).

A real agent process polls the simulated Modbus building and publishes through a real
mosquitto with `profiles: [native, homeassistant]`; Home Assistant, set up against the same
broker, must then list every point as an entity through its REST API (`/api/states`), with the
value, unit and device class of the native telemetry message the state came from, the raised
alarm as a `problem` binary sensor that is `on`, and every entity `unavailable` once the agent
is killed (the broker's Last Will). The release that runs on this Python (2024.3) predates
device-based discovery, so the profile runs with `discovery: entity`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.wire.homeassistant import UNITS
from tests.broker import Mosquitto, free_port
from tests.faults.harness import ROOT, AgentProcess, config
from tests.integration.test_schemas import assert_valid
from tests.observer import Observer, observing
from tests.wire import ha_core

GW = "gw-test"


@pytest.fixture(scope="module")
def home_assistant_installed() -> None:
    try:
        ha_core.ensure_installed()
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:  # fail, never skip
        pytest.fail(f"Home Assistant {ha_core.HA_VERSION} could not be installed: {error}")


async def wait_states(hass: ha_core.HomeAssistantCore, ready: Any, timeout: float,
                      what: str) -> dict[str, dict[str, Any]]:
    """Poll /api/states until `ready(states)`; the last states in the failure message."""
    end = time.monotonic() + timeout
    while True:
        states = await hass.states()
        if ready(states):
            return states
        if time.monotonic() > end:
            shown = {k: (v["state"], v["attributes"].get("friendly_name")) for k, v in
                     states.items()}
            raise AssertionError(f"{what} not seen in {timeout}s: {shown}\n{hass.log_tail()}")
        await asyncio.sleep(0.5)


def expected_entities(observer: Observer) -> dict[str, dict[str, Any]]:
    """friendly name -> the discovery config the agent published for it, with its platform
    (`p`, from the topic) added (Home Assistant names an entity '{device name} {entity name}')."""
    return {f"{m.body['dev']['name']} {m.body['name']}": {**m.body, "p": m.topic.split("/")[1]}
            for m in observer.messages if m.topic.startswith("homeassistant/") and m.body}


# The loggers that speak of our entities: the MQTT integration (a discovery config refused, a
# template it could not render, a value it could not take) and the entity platforms (a unit that
# does not fit its device class, a state class a device class does not allow).
ENTITY_LOGGERS = re.compile(r"\[homeassistant\.(components\.(mqtt|sensor|binary_sensor|number|"
                            r"switch)|helpers\.entity)")


def complaints(hass: ha_core.HomeAssistantCore) -> list[str]:
    return [line for line in hass.log_tail(1 << 20).splitlines()
            if (" WARNING " in line or " ERROR " in line) and ENTITY_LOGGERS.search(line)]


def written_events(observer: Observer) -> list[dict[str, Any]]:
    return [m.body for m in observer.messages if m.topic == f"{ROOT}/evt"
            and m.body.get("type") == "point.written"]


def by_name(states: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["attributes"].get("friendly_name"): s for s in states.values()}


def native_message(observer: Observer, dev: str, seq: int) -> dict[str, Any] | None:
    return next((m.body for m in observer.messages
                 if m.topic == f"{ROOT}/dev/{dev}/tm" and m.body.get("seq") == seq), None)


# The install (first run only) is bounded by ensure_installed's own per-step timeout, not this one.
@pytest.mark.timeout(150, func_only=True)
async def test_home_assistant_lists_the_entities_with_native_values_and_loses_them_on_sigkill(
        home_assistant_installed: None, tmp_path: Path, broker: Mosquitto,
        modbus_building: tuple) -> None:
    _, modbus_port = modbus_building
    http_port = free_port()
    ha_core.write_config_dir(tmp_path / "ha", http_port)
    hass = ha_core.HomeAssistantCore(tmp_path / "ha", http_port)
    path = config(tmp_path, broker, modbus_port,
                  mqtt={"profiles": ["native", "homeassistant"],
                        "homeassistant": {"discovery": "entity", "writes": True}},
                  rules=[{"id": "vmc-low", "type": "threshold",
                          "point": "vmc-a/exhaust_pressure", "below": 1e6, "severity": "major"},
                         {"id": "pump-comm", "type": "comm_lost", "device": "pump-1",
                          "for": "5s"}])
    agent = AgentProcess(path, tmp_path / "agent.log")
    hass.start()
    try:
        await hass.wait_up(90)
        await hass.onboard()
        await hass.add_mqtt(broker.port)
        async with observing(broker.port, "#", client_id="ha-core-obs") as observer:
            await agent.start()
            await observer.wait_for(lambda ms: sum(m.topic == f"{ROOT}/ha/pump-1" for m in ms)
                                    >= 2, timeout=30)
            expected = expected_entities(observer)
            points = {(c["state_topic"].rsplit("/", 1)[1], n) for n, c in expected.items()
                      if c["state_topic"].startswith(f"{ROOT}/ha/") and "_alarms" not in
                      c["state_topic"]}
            assert len(points) == 16  # every point of vmc-a (8) and pump-1 (8)
            for body in expected.values():
                assert_valid("ha-entity-discovery.json",
                             {k: v for k, v in body.items() if k != "p"})

            def all_known(states: dict[str, dict[str, Any]]) -> bool:
                named = by_name(states)
                return all(name in named and named[name]["state"] not in ("unknown",
                                                                          "unavailable")
                           for name in expected)

            states = by_name(await wait_states(hass, all_known, 30, "every entity with a value"))

            # Each field entity: its value is the one of the native telemetry message it came
            # from (the seq Home Assistant shows as an attribute), its unit and device class
            # Home Assistant's own for the point's SenML unit.
            checked = 0
            for dev, name in sorted(points):
                state = states[name]
                point = expected[name]["value_template"].split("value_json.v.")[1].split()[0]
                seq = state["attributes"]["seq"]
                await observer.wait_for(lambda _: native_message(observer, dev, seq) is not None)
                record = next(r for r in native_message(observer, dev, seq)["e"]
                              if r["n"] == point)
                platform = expected[name]["p"]
                assert state["entity_id"].startswith(f"{platform}."), (name, state["entity_id"])
                if "vb" in record:
                    assert state["state"] == ("on" if record["vb"] else "off"), (name, record)
                    continue
                ha_unit, device_class, factor = UNITS.get(record.get("u", "count"),
                                                          (record.get("u"), None, 1.0))
                assert float(state["state"]) == pytest.approx(record["v"] * factor), (name, record)
                assert state["attributes"].get("unit_of_measurement") == ha_unit, (name, record)
                assert state["attributes"].get("device_class") == device_class, (name, record)
                if platform == "sensor":
                    assert state["attributes"]["state_class"] in ("measurement",
                                                                  "total_increasing")
                checked += 1
            assert checked >= 6  # the numeric points, not only booleans
            pressure = states[f"vmc-a ({GW}) exhaust pressure"]["attributes"]
            assert (pressure["unit_of_measurement"], pressure["device_class"]) == ("Pa",
                                                                                   "pressure")

            # The alarm raised by the threshold rule is a problem binary sensor, on; the
            # other rule's, off; the gateway is connected.
            alarm = states[f"batigate {GW} alarm vmc-low"]
            assert alarm["entity_id"].startswith("binary_sensor.")
            assert (alarm["state"], alarm["attributes"]["device_class"]) == ("on", "problem")
            assert states[f"batigate {GW} alarm pump-comm"]["state"] == "off"
            online = states[f"batigate {GW} online"]
            assert (online["state"], online["attributes"]["device_class"]) == ("on",
                                                                               "connectivity")

            # Writes from Home Assistant's own services go through point.write.
            setpoint = states[f"vmc-a ({GW}) pressure setpoint"]["entity_id"]
            fan = states[f"vmc-a ({GW}) fan enable"]["entity_id"]
            assert (setpoint.split(".")[0], fan.split(".")[0]) == ("number", "switch")
            await hass.call("POST", "/api/services/number/set_value",
                            {"entity_id": setpoint, "value": 140})
            await hass.call("POST", "/api/services/switch/turn_off", {"entity_id": fan})
            await observer.wait_for(lambda _: len(written_events(observer)) >= 2)
            assert {(w["n"], w["value"], w["by"]) for w in written_events(observer)} == {
                ("pressure_setpoint", 140, "homeassistant"),
                ("fan_enable", False, "homeassistant")}
            await wait_states(hass, lambda s: s[setpoint]["state"] == "140"
                              and s[fan]["state"] == "off", 10, "the written values read back")
            assert complaints(hass) == []

            # SIGKILL: the Will on {root}/state makes every field and alarm entity unavailable
            # and the gateway's connectivity sensor off.
            await agent.kill()

            def gone(states: dict[str, dict[str, Any]]) -> bool:
                named = by_name(states)
                return named[f"batigate {GW} online"]["state"] == "off" and all(
                    named[name]["state"] == "unavailable" for name in expected
                    if not name.endswith(" online"))

            await wait_states(hass, gone, 20, "every entity unavailable after the SIGKILL")
    finally:
        if agent.alive:
            await agent.stop()
        hass.stop()
