"""Wire profile `homeassistant` under faults: a real agent process polling the simulated Modbus
building, a persistent mosquitto that goes down and comes back, then the agent killed with
SIGKILL. The profile must keep the native durability: every telemetry row reaches Home Assistant's
topics once the broker is back (live ones on the state topic, the held ones in order on
`ha/{dev}/hist`), and the Last Will makes every entity unavailable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.harness import ROOT, AgentProcess, config, persistent_broker
from tests.observer import Observer, observing
from tests.wire.test_homeassistant import render

OUTAGE = 4.0


def first_seqs(observer: Observer, topic: str) -> list[int]:
    """The seqs of the first copies on `topic`, in arrival order (QoS 1 may repeat some)."""
    seen: set[int] = set()
    out = []
    for m in observer.messages:
        if m.topic == topic and not m.retained and m.body["seq"] not in seen:
            seen.add(m.body["seq"])
            out.append(m.body["seq"])
    return out


@pytest.mark.timeout(120)
async def test_outage_backlog_in_order_and_sigkill_availability(
        tmp_path: Path, modbus_building: tuple) -> None:
    _, modbus_port = modbus_building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    path = config(tmp_path, broker, modbus_port, mqtt={"profiles": ["native", "homeassistant"]},
                  buffer={"backlog_rate": 100, "backlog_burst": 20})
    agent = AgentProcess(path, tmp_path / "agent.log")
    devices = ("vmc-a", "pump-1")
    try:
        async with observing(broker.port, "#", client_id="ha-faults") as observer:
            await agent.start()
            await observer.wait_for(lambda ms: all(
                sum(m.topic == f"{ROOT}/ha/{d}" for m in ms) >= 5 for d in devices))
            broker.stop()
            await asyncio.sleep(OUTAGE)
            broker.start()

            def caught_up(_: object) -> bool:  # every native tm row has its HA message
                for dev in devices:
                    native = set(first_seqs(observer, f"{ROOT}/dev/{dev}/tm"))
                    ha = set(first_seqs(observer, f"{ROOT}/ha/{dev}")) | set(
                        first_seqs(observer, f"{ROOT}/ha/{dev}/hist"))
                    if not first_seqs(observer, f"{ROOT}/ha/{dev}/hist") or native - ha:
                        return False
                return True

            await observer.wait_for(caught_up, timeout=60)
            for dev in devices:
                live = first_seqs(observer, f"{ROOT}/ha/{dev}")
                held = first_seqs(observer, f"{ROOT}/ha/{dev}/hist")
                assert live == sorted(live) and held == sorted(held), dev  # each lane in order
                native = [m.body for m in observer.messages
                          if m.topic == f"{ROOT}/dev/{dev}/tm"]
                assert {b["seq"] for b in native if b["hist"]} <= set(held), dev
                assert not set(live) & set(held), dev
                assert all(m.body["hist"] for m in observer.messages
                           if m.topic == f"{ROOT}/ha/{dev}/hist")

            # SIGKILL: the broker publishes the Last Will on {root}/state; Home Assistant's
            # availability template of every entity reads it as offline.
            await agent.kill()
            await observer.wait_for(lambda ms: any(
                m.topic == f"{ROOT}/state" and m.body["online"] is False for m in ms))
            will = next(m.body for m in reversed(observer.messages)
                        if m.topic == f"{ROOT}/state")
            config_body = next(m.body for m in observer.messages
                               if m.topic == "homeassistant/device/gw-test-vmc-a/config")
            gateway_item = config_body["availability"][0]
            assert gateway_item["topic"] == f"{ROOT}/state"
            assert render(gateway_item["value_template"], will) == "offline"
            assert config_body["availability_mode"] == "all"
    finally:
        if agent.alive:
            await agent.stop()
        broker.stop()
