"""Commands through a real mosquitto to an agent polling a real Modbus peer."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from tests.broker import Mosquitto
from tests.commands.mqtt_backend import ROOT, agent_with_commands, backend
from tests.integration.helpers import load, write_config


@pytest.fixture
def building(modbus_building: tuple[ModbusBuilding, int]) -> tuple[ModbusBuilding, int]:
    return modbus_building


def req(op: str, args: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "op": op, "args": args or {},
            "exp": int(time.time() + 60), **extra}


def config_for(tmp_path: Path, broker: Mosquitto, modbus_port: int) -> Any:
    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms", "timeout": "300ms",
                "points": DEMO_POINTS[1]}]
    # A lab gateway: point.write runs unsigned (the secure default is in tests/commands/
    # test_secure_default.py).
    return load(write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                             devices=devices, commands={"unsigned": "allow"}))


async def test_the_answer_goes_to_the_mqtt5_response_topic_with_its_correlation_data(
        tmp_path: Path, broker: Mosquitto, building: tuple) -> None:
    _, modbus_port = building
    async with agent_with_commands(config_for(tmp_path, broker, modbus_port)), \
            backend(broker.port) as peer:
        body = req("ping")
        answer = await peer.ask(body, reply_to="backend/replies/42", correlation=b"\x00corr-42")
        assert answer["status"] == "succeeded"
        topic, _, corr = (await peer.wait_for(body["id"]))[0]
        assert topic == "backend/replies/42" and corr == b"\x00corr-42"
        assert not [a for a in peer.answers if a[0].endswith("/cmd/res")
                    and a[1]["id"] == body["id"]]


async def test_without_a_response_topic_the_answer_is_on_cmd_res(
        tmp_path: Path, broker: Mosquitto, building: tuple) -> None:
    _, modbus_port = building
    async with agent_with_commands(config_for(tmp_path, broker, modbus_port)), \
            backend(broker.port, v5=False) as peer:
        body = req("buffer.stats")
        answer = await peer.ask(body)
        assert answer["status"] == "succeeded" and "depth" in answer["result"]
        assert (await peer.wait_for(body["id"]))[0][0] == f"{ROOT}/cmd/res"


async def test_point_read_and_write_reach_the_modbus_device(
        tmp_path: Path, broker: Mosquitto, building: tuple) -> None:
    sim, modbus_port = building
    async with agent_with_commands(config_for(tmp_path, broker, modbus_port)) as (agent, _), \
            backend(broker.port) as peer:
        read = await peer.ask(req("point.read", {"dev": "vmc-a", "n": "exhaust_pressure"}),
                              reply_to="backend/replies/r")
        result = read["result"]
        assert read["status"] == "succeeded", read
        assert 100 <= result["v"] <= 140 and result["u"] == "Pa" and result["q"] == "good"
        wrote = await peer.ask(req("point.write",
                                   {"dev": "vmc-a", "n": "pressure_setpoint", "v": 180},
                                   by="ops"), reply_to="backend/replies/w")
        assert wrote["status"] == "succeeded", wrote
        again = await peer.ask(req("point.read", {"dev": "vmc-a", "n": "pressure_setpoint"}),
                               reply_to="backend/replies/r")
        assert again["result"]["v"] == 180
        refused = await peer.ask(req("point.write", {"dev": "vmc-a", "n": "fan_speed", "v": 1}),
                                 reply_to="backend/replies/w")
        assert (refused["status"], refused["code"]) == ("rejected", 403)
        polled = await peer.ask(req("poll.now", {"dev": "vmc-a"}), reply_to="backend/replies/p")
        assert (polled["status"], polled["code"]) == ("accepted", 202)
        sim.set_silent(1, True)
        dead = await peer.ask(req("point.read", {"dev": "vmc-a", "n": "exhaust_pressure"}),
                              reply_to="backend/replies/r")
        assert (dead["status"], dead["code"]) == ("failed", 503), dead
        assert agent.pipeline.latest["vmc-a"]  # the poller had values all along


async def test_garbage_and_floods_never_stall_polling_nor_kill_the_agent(
        tmp_path: Path, broker: Mosquitto, building: tuple) -> None:
    _, modbus_port = building
    junk: list[bytes] = [b"", b"{", b"\xff" * 64, b"[" * 5000, b'{"id": "j1"}',
                         b'{"id": "j2", "op": "ping", "exp": NaN}',
                         json.dumps({"id": "j3", "op": "ping", "exp": 1}).encode(),
                         json.dumps({"id": "j4", "op": "x" * 60, "exp": 9e9}).encode(),
                         json.dumps({"id": "j5", "args": {"pad": "x" * 40000}}).encode(),
                         bytes([0xd8, 28, 0x81, 0xd8, 29, 0x00])]
    junk += [os.urandom(n) for n in range(1, 200, 7)]
    async with agent_with_commands(config_for(tmp_path, broker, modbus_port)) as (agent, _), \
            backend(broker.port) as peer:
        await peer.ask(req("ping"))  # subscribed
        poller = agent.pollers["vmc-a"]
        polls_before = poller.stats.polls
        started = time.monotonic()
        for payload in junk * 4:
            await peer.send(payload, reply_to="backend/replies/junk")
        async with asyncio.timeout(10):
            while len([a for a in peer.answers if a[0] == "backend/replies/junk"]) < len(junk) * 4:
                await asyncio.sleep(0.05)
        for _, body, _ in peer.answers:
            assert body["status"] in ("rejected", "succeeded"), body
        named = {b["id"]: b for _, b, _ in peer.answers if b["id"] in ("j1", "j3", "j5")}
        assert named["j1"]["code"] == 400 and named["j3"]["code"] == 410
        assert named["j5"]["code"] == 413
        await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
        assert poller.stats.polls >= polls_before + 3, (polls_before, poller.stats)
        assert (await peer.ask(req("ping")))["status"] == "succeeded"
        assert agent.uplink.connected.is_set()


async def test_a_slow_command_does_not_hold_up_the_others(
        tmp_path: Path, broker: Mosquitto, building: tuple) -> None:
    """A fresh read from a device that does not answer takes its whole timeout (3 s here); a
    `ping` sent after it is answered first, at once."""
    sim, modbus_port = building
    sim.set_silent(3, True)
    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms", "timeout": "300ms",
                "points": DEMO_POINTS[1]},
               {"id": "vmc-b", "bus": "lan", "address": 3, "poll": "1h", "timeout": "3s",
                "points": DEMO_POINTS[3]}]
    config = load(write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                               devices=devices))
    async with agent_with_commands(config), backend(broker.port) as peer:
        await peer.ask(req("ping"))  # subscribed
        slow, quick = req("point.read", {"dev": "vmc-b", "n": "fan_speed"}), req("ping")
        await peer.send(json.dumps(slow).encode())
        await asyncio.sleep(0.2)  # the read is on the bus
        sent = time.monotonic()
        await peer.send(json.dumps(quick).encode())
        await peer.wait_for(quick["id"], timeout=2)
        assert time.monotonic() - sent < 1.0
        assert not [a for a in peer.answers if a[1].get("id") == slow["id"]]  # still reading
        (_, answer, _), = await peer.wait_for(slow["id"], timeout=10)
        assert answer["code"] == 503, answer  # and it does end, with the device's absence
