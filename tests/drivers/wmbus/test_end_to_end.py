"""Radio meters end to end: the emulated iM871A on TCP, driven by the real driver in a real agent,
through a real mosquitto, read back as a backend would.

One building: four flats' water meters (flat 103 leaks 6 l/h; flat 102's key in the gateway's
keys file is wrong; flat 104's meter falls silent), a heat meter, a heat cost allocator and a
neighbour's meter the config does not know. Each case must end as a clear, counted, reported
outcome while everything else goes on.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from agent.config import loader as config_mod
from agent.sim.radio_meters import RadioAir, default_radio_meters, keys_file
from agent.sim.radio_stick import EmulatedStick
from tests.broker import Mosquitto
from tests.integration.test_schemas import assert_valid
from tests.integration.helpers import running_agent
from tests.observer import Observer, observing

ROOT = "bgw/v1/site-a/gw-test"
INTERVAL = 0.4


def radio_building(silent_after: float | None = 4.0) -> list[Any]:
    meters = default_radio_meters(interval=INTERVAL, silent_after=silent_after)
    for meter in meters:  # no household use: only the leak flows, whatever the hour
        if hasattr(meter.source, "daily_litres"):
            meter.source.daily_litres = 0.0
    return meters


def write_config(tmp_path: Path, broker: Mosquitto, port: str, meters: list[Any],
                 keys: Path, meter_extra: dict[str, Any] | None = None, **bus: Any) -> Path:
    devices = []
    for m in meters:
        if not m.configured:
            continue
        device: dict[str, Any] = {"id": m.name, "bus": "radio", "address": m.source.ident,
                                  "profile": m.profile, "interval": f"{INTERVAL}s",
                                  **(meter_extra or {})}
        if m.name == "flat-103-water":  # the profile's leak rule, without waiting for a night
            device["rules"] = {"night-leak": {"for": "2s"}}
        devices.append(device)
    doc = {
        "gateway": {"id": "gw-test", "site": "site-a"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False, "reconnect_max": "1s"},
        "buffer": {"path": str(tmp_path / "outbox.db"), "commit_interval": "200ms"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "health": {"interval": "1s"},
        "buses": [{"id": "radio", "driver": "wmbus", "receiver": "im871a", "port": port,
                   "keys": str(keys), **bus}],
        "devices": devices,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def wrong_key_for(keys: Path, ident: str) -> None:
    lines = [line if not line.startswith(ident) else f"{ident} SAP {'00' * 16}"
             for line in keys.read_text().splitlines()]
    keys.write_text("\n".join(lines) + "\n")


def latest_health(observer: Observer) -> dict[str, Any]:
    return observer.bodies("/health")[-1]["buses"]["radio"]


def tm_values(observer: Observer, device: str) -> list[dict[str, dict[str, Any]]]:
    return [{r["n"]: r for r in body["e"]} for body in observer.bodies(f"/dev/{device}/tm")]


async def test_the_building_s_radio_meters_arrive_with_values_units_and_alarms(
        tmp_path: Path, broker: Mosquitto) -> None:
    meters = radio_building()
    keys = keys_file(meters, tmp_path / "keys")
    wrong_key_for(keys, "41000102")
    stick = EmulatedStick("im871a", seed=3)
    port = await stick.start_tcp()
    air = RadioAir(meters, time.time, repeat=0.3, collision=0.05, seed=4)
    air.sticks.append(stick)
    config = config_mod.load(write_config(tmp_path, broker, f"socket://127.0.0.1:{port}",
                                          meters, keys))
    playing = asyncio.create_task(air.run())
    try:
        async with observing(broker.port, f"{ROOT}/#") as observer, running_agent(config):
            def done(ms: list[Any]) -> bool:
                events = [m.body for m in ms if m.topic.endswith("/evt")]
                return (any(e.get("type") == "alarm.raised" and "flat-103" in str(e.get("alarm"))
                            for e in events)
                        and any(e.get("type") == "device.down" and e.get("dev") == "flat-104-water"
                                for e in events)
                        and len([m for m in ms if m.topic.endswith("/health")]) >= 2)
            await observer.wait_for(done, timeout=30)
    finally:
        playing.cancel()
        await stick.stop()

    # Values and units, as SenML, with the RSSI of the telegram.
    water = tm_values(observer, "flat-101-water")[-1]
    assert water["volume"]["u"] == "m3" and water["volume"]["v"] == 20.0
    assert water["flow"]["u"] == "m3/s" and water["flow"]["v"] == 0
    assert water["rssi"]["u"] == "dBm" and -70 < water["rssi"]["v"] < -50
    heat = tm_values(observer, "flat-101-heat")[-1]
    assert heat["energy"]["u"] == "J" and heat["energy"]["v"] >= 3_000_000 * 3600
    assert heat["flow_temp"]["u"] == "Cel" and 50 < heat["flow_temp"]["v"] < 75
    hca = tm_values(observer, "flat-101-hca")[-1]
    assert hca["units"]["v"] == 1500 and "u" not in hca["units"]
    # The leak: 6 l/h that never stops raises the profile's leak alarm on flat 103.
    leak = tm_values(observer, "flat-103-water")[-1]
    assert abs(leak["flow"]["v"] - 6 / 3.6e6) < 1e-9
    raised = [b for b in observer.bodies("/evt") if b.get("type") == "alarm.raised"]
    assert {b["alarm"] for b in raised} == {"flat-103-water-night-leak"}
    # The wrong key: flat 102 is heard (not down) but none of its values is published as good.
    wrong = tm_values(observer, "flat-102-water")
    assert wrong and all(r.get("q") == "bad" and "v" not in r
                         for body in wrong for n, r in body.items() if n != "rssi")
    # The silent meter: down with the reason, the others not.
    down = [b for b in observer.bodies("/evt") if b.get("type") == "device.down"]
    assert [b["dev"] for b in down] == ["flat-104-water"]
    assert "not heard for 1.6s" in down[0]["reason"]
    # Counted and reported per bus in health.
    health = latest_health(observer)
    assert health["accepted"] > 10 and health["telegrams"] >= health["accepted"]
    assert health["undecryptable"] > 0  # flat 102, and the neighbour (no key at all)
    assert health["unknown_meters"] > 0  # the neighbour
    assert health["duplicates"] > 0  # the repeats (30 %)
    assert health["garbage"] > 0  # collisions (5 %) broke HCI messages
    assert health["resets"] == 0 and health["reopens"] == 0 and health["receiving"] == 1
    # The messages follow the published contract (asyncapi/schemas).
    assert_valid("health.json", observer.bodies("/health")[-1])
    assert_valid("tm.json", observer.bodies("/dev/flat-101-water/tm")[-1])
    assert_valid("tm.json", observer.bodies("/dev/flat-102-water/tm")[-1])


async def test_a_silent_stick_is_reset_and_a_garbage_stick_only_counts(
        tmp_path: Path, broker: Mosquitto) -> None:
    meters = radio_building(silent_after=None)
    keys = keys_file(meters, tmp_path / "keys")
    stick = EmulatedStick("im871a", seed=5)
    port = await stick.start_tcp()
    air = RadioAir(meters, time.time, repeat=0, collision=0, seed=6)
    air.sticks.append(stick)
    config = config_mod.load(write_config(tmp_path, broker, f"socket://127.0.0.1:{port}",
                                          meters, keys, silence="1500ms",
                                          # meters outlast the stick's silence and its reset
                                          meter_extra={"silence_factor": 25}))
    playing = asyncio.create_task(air.run())
    try:
        async with observing(broker.port, f"{ROOT}/#") as observer, running_agent(config) as agent:
            driver = agent.drivers["radio"]
            await observer.wait_for(lambda ms: len(tm_values(observer, "flat-101-water")) >= 2)
            stick.go_silent()  # hung: no telegram until someone resets it
            await observer.wait_for(lambda ms: latest_health(observer)["resets"] >= 1
                                    if observer.bodies("/health") else False, timeout=15)
            heard = len(tm_values(observer, "flat-101-water"))
            await observer.wait_for(lambda ms: len(tm_values(observer, "flat-101-water"))
                                    > heard + 2)
            for _ in range(5):  # line noise between messages
                stick.send_garbage(200)
                await asyncio.sleep(0.2)
            heard = len(tm_values(observer, "flat-101-water"))
            await observer.wait_for(lambda ms: len(tm_values(observer, "flat-101-water"))
                                    > heard + 2 and latest_health(observer)["garbage"] >= 1000)
            states = {d: p.state.value for d, p in agent.pollers.items()}
    finally:
        playing.cancel()
        await stick.stop()
    assert stick.resets == 1 and driver.stats.extra["resets"] == 1
    assert driver.stats.extra["reopens"] == 0  # the reset brought it back: no reopen needed
    assert set(states.values()) == {"ok"}  # no meter was declared down for the stick's fault
    down = [b for b in observer.bodies("/evt") if b.get("type") == "device.down"]
    assert down == []
    [reset] = [b for b in observer.bodies("/evt") if b.get("type", "").startswith("bus.")]
    assert (reset["type"], reset["bus"], reset["resets"]) == ("bus.reset", "radio", 1)
    assert reset["reason"] == "no telegram for 1.5s"
    assert_valid("evt.json", reset)
