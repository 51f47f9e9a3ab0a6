"""Alarms from the simulated building's faults to MQTT, through outages and restarts.

The devices are declared by profile, as a technician would; their default rules are shortened
through the device's `rules:` overrides so that the test runs in seconds, not the field's minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import loader as config_mod
from agent.sim.building import Building
from tests.broker import Mosquitto
from tests.integration.helpers import running_agent, write_config
from tests.observer import Observer
from tests.observer import observing as observe

ROOT = "bgw/v1/site-a/gw-test"
FAST = {"low-depression": {"for": "1s"}, "pressure-switch": False, "general-fault": False,
        "fan-stopped": False, "filter-clogged": False, "comm-lost": {"for": "1s"}}


@pytest.fixture
async def building() -> AsyncIterator[Building]:
    sim = Building()
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Any:
    """A broker that keeps the observer's session across its own restarts."""
    server = Mosquitto(tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()


def config_file(tmp_path: Path, broker_port: int, modbus_port: int) -> Path:
    return write_config(tmp_path, broker_port=broker_port, modbus_port=modbus_port, devices=[
        {"id": "vmc", "bus": "lan", "address": 1, "profile": "vmc-caisson", "poll": "200ms",
         "timeout": "300ms", "rules": FAST}])


def observing(port: int) -> Any:
    return observe(port, f"{ROOT}/#")


def alarm_events(observer: Observer, kind: str, alarm: str = "vmc-low-depression") -> list[dict]:
    return [b for b in observer.bodies("/evt")
            if b.get("type") == f"alarm.{kind}" and b.get("alarm") == alarm]


async def test_depression_loss_raises_then_clears_with_every_field(
        tmp_path: Path, persistent_broker: Mosquitto, building: Building) -> None:
    """The VMC loses its depression: one `alarm.raised` with rule, device, point, value,
    threshold, since and severity, the retained `alarms` snapshot lists it; the depression comes
    back: one `alarm.cleared` and an empty snapshot. No duplicates."""
    config = config_mod.load(config_file(tmp_path, persistent_broker.port, building.ports[0]))
    async with observing(persistent_broker.port) as observer, running_agent(config):
        await asyncio.sleep(1)
        building.targets["vmc"].set("depression", 20)
        await observer.wait_for(lambda _: alarm_events(observer, "raised"))
        building.targets["vmc"].set("depression", 120)
        await observer.wait_for(lambda _: alarm_events(observer, "cleared"))
        await asyncio.sleep(1)  # time for a wrong second event to show up
    raised, = alarm_events(observer, "raised")
    cleared, = alarm_events(observer, "cleared")
    assert raised["rule"] == "vmc-low-depression" and raised["device"] == "vmc"
    assert raised["point"] == "exhaust_pressure" and raised["severity"] == "major"
    assert raised["value"] < 50 and raised["threshold"] == 50 and raised["unit"] == "Pa"
    assert raised["ts"] - raised["since"] >= 1.0  # the on-delay was honoured
    assert cleared["since"] >= raised["since"]
    snapshots = observer.bodies("/alarms")
    assert any(a["alarm"] == "vmc-low-depression" for a in snapshots[0]["active"])
    assert snapshots[-1]["active"] == []


async def test_alarm_cleared_during_an_outage_overtakes_the_backlog(
        tmp_path: Path, persistent_broker: Mosquitto, building: Building) -> None:
    """Raised online, cleared while the broker is down: the clear is kept on disk and, once the
    broker is back, published ahead of the telemetry that was buffered before it."""
    config = config_mod.load(config_file(tmp_path, persistent_broker.port, building.ports[0]))
    async with observing(persistent_broker.port) as observer, running_agent(config) as agent:
        building.targets["vmc"].set("depression", 20)
        await observer.wait_for(lambda _: alarm_events(observer, "raised"))
        persistent_broker.stop()
        await asyncio.sleep(1.5)
        building.targets["vmc"].set("depression", 120)
        await asyncio.sleep(1.5)
        assert agent.outbox.stats()["alarms"] >= 1  # the clear waits on disk
        received_before = len(observer.messages)
        persistent_broker.start()
        await observer.wait_for(lambda _: alarm_events(observer, "cleared"), timeout=20)
        await asyncio.wait_for(agent.outbox.emptied.wait(), 20)
    after = observer.messages[received_before:]
    cleared_at = next(i for i, m in enumerate(after)
                      if m.body.get("type") == "alarm.cleared")
    cleared_seq = after[cleared_at].body["seq"]
    # Only what the agent held back (hist): the persistent broker may also hand the observer,
    # after its restart, live telemetry it had queued before it went down.
    older_telemetry = [i for i, m in enumerate(after)
                       if m.topic.endswith("/tm") and m.body["hist"]
                       and m.body["seq"] < cleared_seq]
    assert older_telemetry, "the outage should have buffered telemetry"
    assert cleared_at < min(older_telemetry), "the alarm did not overtake the backlog"
    assert after[cleared_at].body["hist"] is True


async def test_alarm_state_survives_a_restart(tmp_path: Path, persistent_broker: Mosquitto,
                                              building: Building) -> None:
    """Raised, then the agent stops: a restart with the fault still there raises nothing again;
    the fault goes away while the agent is down: the next start sends the clear."""
    path = config_file(tmp_path, persistent_broker.port, building.ports[0])
    async with observing(persistent_broker.port) as observer:
        building.targets["vmc"].set("depression", 20)
        async with running_agent(config_mod.load(path)):
            await observer.wait_for(lambda _: alarm_events(observer, "raised"))
        async with running_agent(config_mod.load(path)):
            await asyncio.sleep(3)  # well past the 1 s on-delay
        assert len(alarm_events(observer, "raised")) == 1, "raised twice across a restart"
        building.targets["vmc"].set("depression", 120)  # repaired while the agent is down
        async with running_agent(config_mod.load(path)):
            await observer.wait_for(lambda _: alarm_events(observer, "cleared"))
    assert len(alarm_events(observer, "raised")) == 1
    assert len(alarm_events(observer, "cleared")) == 1
