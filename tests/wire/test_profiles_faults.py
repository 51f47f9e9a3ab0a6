"""Wire profiles `homeassistant` and `thingsboard` under faults: a real agent process polling the
simulated Modbus building, a persistent mosquitto that goes down and comes back, then the agent
killed with SIGKILL. Each profile keeps the native durability: every telemetry row reaches Home
Assistant's topics once the broker is back (live ones on the state topic, the held ones in order
on `ha/{dev}/hist`) and ThingsBoard's telemetry (at the readings' own times, the held ones in
order); the Last Will makes every Home Assistant entity unavailable. ThingsBoard has no death
message of a device from a SIGKILL (a bridged broker stays connected to it): its own inactivity
timeout is what marks the devices inactive."""

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


def tb_times(observer: Observer, dev: str, *, everything: bool) -> set[int]:
    """The reading times (ms) of the device's native packs: all, or the held ones only."""
    return {round(m.body["e"][0]["bt"] * 1000) for m in observer.messages
            if m.topic == f"{ROOT}/dev/{dev}/tm" and (everything or m.body["hist"])}


def tb_arrived(observer: Observer, dev: str) -> list[int]:
    name = f"gw-test/{dev}"
    return [row["ts"] for m in observer.messages
            if m.topic == "v1/gateway/telemetry" and name in m.body for row in m.body[name]]


@pytest.mark.timeout(120)
async def test_outage_backlog_in_order_and_sigkill(
        tmp_path: Path, modbus_building: tuple) -> None:
    _, modbus_port = modbus_building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    path = config(tmp_path, broker, modbus_port,
                  mqtt={"profiles": ["native", "homeassistant", "thingsboard"]},
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
                    if tb_times(observer, dev, everything=True) - set(tb_arrived(observer, dev)):
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
                # A row in flight when the broker died is sent again after the reconnection
                # (at least once), as a held one: natively too.
                seqs = [b["seq"] for b in native]
                twice = {q for q in seqs if seqs.count(q) > 1}
                assert set(live) & set(held) <= twice, dev
                assert all(m.body["hist"] for m in observer.messages
                           if m.topic == f"{ROOT}/ha/{dev}/hist")

            # ThingsBoard: every native pack as telemetry at its reading time; the held ones in
            # order among themselves.
            for dev in devices:
                held_ts = tb_times(observer, dev, everything=False)
                replay = [ts for ts in dict.fromkeys(tb_arrived(observer, dev)) if ts in held_ts]
                assert held_ts and replay == sorted(replay), dev

            # SIGKILL: the broker publishes the Last Will on {root}/state; Home Assistant's
            # availability template of every entity reads it as offline.
            before = len(observer.messages)
            await agent.kill()
            await observer.wait_for(lambda ms: any(
                m.topic == f"{ROOT}/state" and m.body["online"] is False for m in ms[before:]))
            will = next(m.body for m in observer.messages[before:]
                        if m.topic == f"{ROOT}/state" and m.body["online"] is False)
            config_body = next(m.body for m in observer.messages
                               if m.topic == "homeassistant/device/gw-test-vmc-a/config")
            gateway_item = config_body["availability"][0]
            assert gateway_item["topic"] == f"{ROOT}/state"
            assert render(gateway_item["value_template"], will) == "offline"
            # What Home Assistant reads when it (re)subscribes: the retained state, offline.
            async with observing(broker.port, f"{ROOT}/state", client_id="ha-late") as late:
                await late.wait_for(lambda ms: bool(ms))
                [retained] = late.messages
                assert retained.retained
                assert render(gateway_item["value_template"], retained.body) == "offline"
            assert config_body["availability_mode"] == "all"
    finally:
        if agent.alive:
            await agent.stop()
        broker.stop()
