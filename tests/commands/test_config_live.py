"""config.apply on a running agent, with a real broker and real Modbus servers: what changed is
applied live and nothing else is touched (issue #6: "apply without restarting unaffected
drivers"); an unconfirmed or rolled back apply comes back live too; a restart section restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.runtime import supervisor
from agent.lifecycle.config_trial import ConfigTrial, bring_to
from agent.sim.modbus_building import ModbusBuilding
from tests.broker import Mosquitto
from tests.commands.conftest import request
from tests.integration.helpers import load, running_agent, write_config
from tests.observer import observing

ROOT = "bgw/v1/site-a/gw-test"


def device(dev_id: str, bus: str, unit: int = 1, poll: str = "200ms") -> dict[str, Any]:
    return {"id": dev_id, "bus": bus, "address": unit, "poll": poll, "timeout": "300ms",
            "points": [{"name": "depression", "register": "input:1", "type": "int16",
                        "scale": 0.1, "unit": "Pa"}]}


RULE = {"id": "low-depression", "type": "threshold", "point": "vmc-a/depression",
        "below": 1000, "severity": "major"}  # always raised: the simulated caisson runs near 100 Pa


@pytest.fixture
async def second_building() -> AsyncIterator[int]:
    sim = ModbusBuilding()
    port = await sim.start(0)
    yield port
    await sim.stop()


def two_buses(tmp_path: Path, broker: Mosquitto, ports: tuple[int, int],
              *, poll_b: str = "200ms", rules: list[dict[str, Any]] | None = None) -> str:
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=ports[0],
                        devices=[device("vmc-a", "lan"), device("vmc-b", "lan2", poll=poll_b)],
                        rules=rules or [RULE], commands={"unsigned": "allow"})  # a lab
    doc = yaml.safe_load(path.read_text())
    doc["buses"].append({"id": "lan2", "driver": "modbus-tcp", "host": "127.0.0.1",
                         "port": ports[1]})
    text = yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text)
    return text


def alarm_events(messages: list[Any], kind: str) -> list[dict[str, Any]]:
    return [m.body for m in messages
            if m.topic.endswith("/evt") and m.body.get("type") == f"alarm.{kind}"]


def edited(text: str, edit: Any) -> str:
    doc = yaml.safe_load(text)
    edit(doc)
    return yaml.safe_dump(doc, sort_keys=False)


async def send(agent: supervisor.Agent, body: dict[str, Any]) -> dict[str, Any]:
    answer = await agent.commands(json.dumps(body).encode())
    assert answer is not None
    return answer


async def polled(agent: supervisor.Agent, dev: str, more_than: int) -> None:
    async with asyncio.timeout(10):
        while agent.pollers[dev].stats.polls <= more_than:
            await asyncio.sleep(0.05)


async def test_a_device_change_replaces_only_that_poller_and_keeps_alarms(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple, second_building: int) -> None:
    """Proves: changing one device's poll period replaces its poller only; the other device's
    poller and both bus connections are the same objects, still polling; a raised alarm stays
    raised without a second `raised` event; a new birth carries the new digest; no restart."""
    text = two_buses(tmp_path, broker, (modbus_building[1], second_building))
    async with observing(broker.port, f"{ROOT}/#") as observer, \
            running_agent(load(tmp_path / "gateway.yaml")) as agent:
        await observer.wait_for(lambda ms: alarm_events(ms, "raised"))
        kept, replaced = agent.pollers["vmc-a"], agent.pollers["vmc-b"]
        drivers = dict(agent.drivers)
        polls_before = kept.stats.polls
        answer = await send(agent, request("config.apply", {"config": edited(
            text, lambda d: d["devices"][1].update(poll="500ms"))}))
        assert (answer["status"], answer["code"]) == ("in_progress", 202), answer
        assert answer["result"]["restart"] is False
        assert answer["result"]["changes"]["devices"] == ["vmc-b"]
        assert answer["result"]["changes"]["buses"] == []
        assert answer["result"]["changes"]["kept_devices"] == 1
        assert agent.pollers["vmc-a"] is kept
        assert agent.pollers["vmc-b"] is not replaced
        assert agent.pollers["vmc-b"].device.poll == 0.5
        assert agent.drivers == drivers and all(agent.drivers[b] is drivers[b] for b in drivers)
        await polled(agent, "vmc-a", polls_before + 3)  # never stopped
        await polled(agent, "vmc-b", 1)  # the new poller runs
        digest = answer["result"]["digest"]
        assert agent.config.digest == digest
        await observer.wait_for(lambda ms: any(
            m.topic == f"{ROOT}/birth" and m.body["config"] == digest for m in ms))
        confirmed = await send(agent, request("config.confirm"))
        assert confirmed["status"] == "succeeded", confirmed
        assert [a["rule"] for a in agent.engine.active()] == ["low-depression"]
        assert not agent.restart_requested.is_set()
    raised = alarm_events(observer.messages, "raised")
    assert len(raised) == 1, raised
    final = [m.body for m in observer.messages if m.topic.endswith("/cmd/res")
             and m.body.get("id") == answer["id"] and m.body["status"] == "succeeded"]
    assert final, "the apply's final answer was not published"


async def test_a_bus_change_reopens_that_bus_only(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple, second_building: int) -> None:
    """Proves: pointing one bus at another server closes and opens that bus alone, with its
    devices; the other bus keeps its connection and poller; a removed rule's alarm is cleared."""
    text = two_buses(tmp_path, broker, (modbus_building[1], second_building))
    async with observing(broker.port, f"{ROOT}/#") as observer, \
            running_agent(load(tmp_path / "gateway.yaml")) as agent:
        await observer.wait_for(lambda ms: alarm_events(ms, "raised"))
        lan, lan2, kept = agent.drivers["lan"], agent.drivers["lan2"], agent.pollers["vmc-a"]

        def move(doc: dict[str, Any]) -> None:
            doc["buses"][1]["port"] = modbus_building[1]
            doc["rules"] = []

        answer = await send(agent, request("config.apply", {"config": edited(text, move)}))
        assert answer["result"]["changes"]["buses"] == ["lan2"], answer
        assert answer["result"]["changes"]["devices"] == ["vmc-b"]
        assert agent.drivers["lan"] is lan and agent.pollers["vmc-a"] is kept
        assert agent.drivers["lan2"] is not lan2
        before = agent.pollers["vmc-b"].stats.polls
        await polled(agent, "vmc-b", before + 2)
        assert agent.pollers["vmc-b"].stats.failures == 0  # the new server answers
        await observer.wait_for(lambda ms: alarm_events(ms, "cleared"))
        assert agent.engine.active() == []


async def test_an_unconfirmed_live_apply_comes_back_live(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple, second_building: int) -> None:
    """Proves: when the confirmation does not come, the previous file is restored and run again
    live (no restart), and the apply's final answer says `failed` with the reason. The stage is
    made with a 1 s probation: the command's own minimum is 30 s."""
    text = two_buses(tmp_path, broker, (modbus_building[1], second_building))
    path = tmp_path / "gateway.yaml"
    async with observing(broker.port, f"{ROOT}/#") as observer, \
            running_agent(load(path)) as agent:
        old_digest = agent.config.digest
        new_text = edited(text, lambda d: d["devices"].pop(1))
        ConfigTrial(path).stage(new_text, confirm_within=1.0, now=agent.clock.time(),
                                cmd_id="cmd-short", by="test")
        applied = await bring_to(agent, load(path), "test")
        agent.trials.watch("config")
        assert applied["restart"] is False and "vmc-b" not in agent.pollers
        await observer.wait_for(lambda ms: any(  # the removed device's retained state says so
            m.topic == f"{ROOT}/dev/vmc-b/state" and m.body["state"] == "disabled" for m in ms))
        await observer.wait_for(lambda ms: any(
            m.topic.endswith("/evt") and m.body.get("type") == "config.rolled_back" for m in ms))
        async with asyncio.timeout(5):
            while agent.config.digest != old_digest:
                await asyncio.sleep(0.05)
        await polled(agent, "vmc-b", 1)  # back, and polling
        assert path.read_text() == text
        assert not agent.restart_requested.is_set()
    final = [m.body for m in observer.messages if m.topic.endswith("/cmd/res")
             and m.body.get("id") == "cmd-short"]
    assert final and final[-1]["status"] == "failed" and "not confirmed" in final[-1]["error"]


async def test_rollback_command_and_restart_sections(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple, second_building: int) -> None:
    """Proves: `config.rollback` after a live apply runs the previous file live and answers
    `succeeded`; a change to the broker section is applied by a restart, as it must be."""
    text = two_buses(tmp_path, broker, (modbus_building[1], second_building))
    async with running_agent(load(tmp_path / "gateway.yaml")) as agent:
        old_digest = agent.config.digest
        first = await send(agent, request("config.apply", {"config": edited(
            text, lambda d: d["devices"][0].update(poll="1s"))}))
        assert first["result"]["restart"] is False
        back = await send(agent, request("config.rollback"))
        assert back["status"] == "succeeded" and back["result"]["restart"] is False, back
        assert agent.config.digest == old_digest
        assert agent.pollers["vmc-a"].device.poll == 0.2
        cold = await send(agent, request("config.apply", {"config": edited(
            text, lambda d: d["mqtt"].update(keepalive=20))}))
        assert cold["result"]["restart"] is True
        assert cold["result"]["changes"]["restart"] == ["mqtt"]
        await asyncio.wait_for(agent.restart_requested.wait(), 3)
