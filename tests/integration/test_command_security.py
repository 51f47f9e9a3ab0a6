"""Attacks on the command topic against real agents through a real mosquitto (issue #16,
findings 1, 2 and the retained-command half of 4): an anonymous publisher on `cmd/req` must not
own a gateway that has only the defaults, a signed command cannot be replayed whatever noise comes
in between, and a retained command runs once, across restarts and crashes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import signing
from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from tests.broker import Mosquitto
from tests.commands.mqtt_backend import ROOT, backend
from tests.faults.harness import AgentProcess
from tests.integration.helpers import load, running_agent, write_config
from tests.observer import observing

GATEWAY = "gw-test"
VMC_A = {"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms", "timeout": "300ms",
         "points": DEMO_POINTS[1]}


def req(op: str, args: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "op": op, "args": args or {},
            "exp": int(time.time() + 600), **extra}


def signed(key: Ed25519PrivateKey, op: str, args: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return signing.sign(req(op, args, aud=GATEWAY, by="ops"), key)


def with_key(tmp_path: Path, key: Ed25519PrivateKey, **settings: Any) -> dict[str, Any]:
    (tmp_path / "ops.pub").write_bytes(signing.public_pem(key))
    return {"public_key": str(tmp_path / "ops.pub"), **settings}


async def control(socket_path: Path, op: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    writer.write(json.dumps({"op": op}).encode() + b"\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return json.loads(line)


async def test_a_gateway_with_the_defaults_refuses_every_anonymous_change_and_says_so(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple[ModbusBuilding, int]) -> None:
    sim, modbus_port = modbus_building
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                        devices=[VMC_A])  # no commands: section at all
    text = path.read_text()
    elsewhere = yaml.safe_load(text)
    elsewhere["mqtt"]["host"] = "broker.attacker.example"
    refused = [req("config.apply", {"config": yaml.safe_dump(elsewhere)}),
               req("point.write", {"dev": "vmc-a", "n": "pressure_setpoint", "v": 200}),
               req("config.get"), req("log.get"), req("audit.get"), req("config.confirm"),
               req("config.rollback"), req("alarm.ack", {"alarm": "x"}),
               req("maintenance.set", {"dev": "vmc-a", "until": None}),
               req("buffer.resend", {"from_seq": 1, "to_seq": 2}), req("log.level",
                                                                       {"level": "debug"}),
               req("agent.restart"), req("cert.renew"), req("cert.rollback")]
    setpoint = sim.devices[1].setpoint  # type: ignore[attr-defined]
    async with observing(broker.port, f"{ROOT}/birth") as observer, \
            running_agent(load(path)) as agent, backend(broker.port) as peer:
        assert (await peer.ask(req("ping")))["status"] == "succeeded"
        read = await peer.ask(req("point.read", {"dev": "vmc-a", "n": "exhaust_pressure"}))
        assert read["status"] == "succeeded", read
        health = await peer.ask(req("health"))
        assert health["result"]["command_auth"] == "unsigned-readonly"
        for body in refused:
            answer = await peer.ask(body)
            assert (answer["status"], answer["code"]) == ("rejected", 401), answer
            assert "refused unsigned" in answer["error"] and "commands.public_key" in \
                answer["error"], answer
        await observer.wait_for(lambda ms: ms)
        assert observer.messages[-1].body["command_auth"] == "unsigned-readonly"
        status = await control(tmp_path / "control.sock", "status")
        assert status["result"]["command_auth"] == "unsigned-readonly"
        assert agent.uplink.connected.is_set() and not agent.restart_requested.is_set()
    assert path.read_text() == text and not (tmp_path / "gateway.yaml.prev").exists()
    assert sim.devices[1].setpoint == setpoint  # type: ignore[attr-defined]
    from agent.cli.main import main  # noqa: PLC0415

    checked = CliRunner().invoke(main, ["config", "check", str(path), "--json"])
    assert json.loads(checked.output)["command_auth"] == "unsigned-readonly"


async def test_a_signed_write_replayed_after_a_flood_of_anonymous_commands_is_not_run_again(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple[ModbusBuilding, int]) -> None:
    """Finding 2: the replay record used to be an LRU that anonymous pings filled."""
    sim, modbus_port = modbus_building
    key = Ed25519PrivateKey.generate()
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                        devices=[VMC_A], commands=with_key(tmp_path, key,
                                                           require_signature="writes",
                                                           cache_size=10))
    write = signed(key, "point.write", {"dev": "vmc-a", "n": "pressure_setpoint", "v": 180})
    async with running_agent(load(path)), backend(broker.port) as peer:
        first = await peer.ask(write)
        assert first["status"] == "succeeded", first
        assert sim.devices[1].setpoint == 180  # type: ignore[attr-defined]
        for _ in range(150):  # anonymous and harmless: they run, and are recorded
            await peer.send(json.dumps(req("ping")).encode())
        for _ in range(50):  # anonymous writes: refused
            await peer.send(json.dumps(req("point.write", {"dev": "vmc-a", "n":
                                                           "pressure_setpoint", "v": 60})
                                       ).encode())
        await peer.ask(req("ping"), timeout=20)  # the flood has been taken
        sim.devices[1].setpoint = 100  # type: ignore[attr-defined]  # someone on site
        await peer.send(json.dumps(write).encode())
        answers = await peer.wait_for(write["id"], count=2)
        assert answers[-1][1]["replayed"] is True and answers[-1][1]["status"] == "succeeded"
        await asyncio.sleep(0.5)
        assert sim.devices[1].setpoint == 100  # type: ignore[attr-defined]


async def publish_retained(port: int, body: dict[str, Any]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="ops-console") as client:
        await client.publish(f"{ROOT}/cmd/req", json.dumps(body).encode(), qos=1, retain=True)


async def test_a_retained_command_runs_once_across_restarts_and_never_after_a_crash(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple[ModbusBuilding, int]) -> None:
    """Findings 4 (retained half): a retained signed write is carried out once, however often
    the agent restarts; one the agent was killed in the middle of is answered failed at the
    next start and never run again (a command that crashes the agent does not loop)."""
    sim, modbus_port = modbus_building
    key = Ed25519PrivateKey.generate()
    vmc_b = {**VMC_A, "id": "vmc-b", "address": 3, "poll": "1h", "timeout": "3s",
             "points": DEMO_POINTS[3]}
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                        devices=[VMC_A, vmc_b], commands=with_key(tmp_path, key))
    agent = AgentProcess(path, tmp_path / "agent.log")
    async with observing(broker.port, f"{ROOT}/cmd/res") as answers:
        def answered(cmd_id: str) -> list[dict[str, Any]]:
            return [m.body for m in answers.messages if m.body.get("id") == cmd_id]

        once = signed(key, "point.write", {"dev": "vmc-a", "n": "pressure_setpoint", "v": 120})
        await publish_retained(broker.port, once)
        await agent.start()
        await answers.wait_for(lambda _: answered(once["id"]))
        assert answered(once["id"])[0]["status"] == "succeeded", answered(once["id"])
        sim.devices[1].setpoint = 90  # type: ignore[attr-defined]
        assert await agent.stop() in (0, -15)
        await agent.start()
        await answers.wait_for(lambda _: len(answered(once["id"])) >= 2)
        assert answered(once["id"])[1]["replayed"] is True
        assert sim.devices[1].setpoint == 90  # type: ignore[attr-defined]  # not run again

        sim.set_silent(3, True)  # the write reaches the device, no answer comes back
        deadly = signed(key, "point.write", {"dev": "vmc-b", "n": "pressure_setpoint", "v": 200})
        await publish_retained(broker.port, deadly)
        async with asyncio.timeout(15):
            while sim.devices[3].setpoint != 200:  # type: ignore[attr-defined]
                await asyncio.sleep(0.05)
        await agent.kill()  # mid-command, as an out-of-memory kill would
        sim.set_silent(3, False)
        sim.devices[3].setpoint = 70  # type: ignore[attr-defined]
        await agent.start()
        await answers.wait_for(lambda _: len(answered(deadly["id"])) >= 2)
        for body in answered(deadly["id"]):
            assert body["status"] == "failed" and "stopped while carrying it out" in \
                body["error"], body
        await asyncio.sleep(1.0)
        assert sim.devices[3].setpoint == 70  # type: ignore[attr-defined]  # never re-run
        assert agent.alive
        await agent.stop()


async def test_a_remote_config_cannot_aim_the_control_socket_at_the_previous_config(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple[ModbusBuilding, int]) -> None:
    """Finding 9, on a lab gateway that runs anonymous commands: the apply is refused with the
    reason, the previous config stays, the agent keeps running."""
    _, modbus_port = modbus_building
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                        devices=[VMC_A], commands={"unsigned": "allow"})
    previous = tmp_path / "gateway.yaml.prev"
    previous.write_text(path.read_text())  # what an earlier apply left for rollbacks
    doc = yaml.safe_load(path.read_text())
    doc["control"]["socket"] = str(previous)
    async with running_agent(load(path)) as agent, backend(broker.port) as peer:
        answer = await peer.ask(req("config.apply", {"config": yaml.safe_dump(doc)}))
        assert (answer["status"], answer["code"]) == ("rejected", 422), answer
        assert "control.socket" in answer["error"] and "side files" in answer["error"]
        assert not agent.restart_requested.is_set()
        assert (await peer.ask(req("ping")))["status"] == "succeeded"
    assert previous.read_text() == path.read_text()
