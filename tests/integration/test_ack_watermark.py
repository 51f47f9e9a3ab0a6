"""`buffer.release: backend` against forged watermarks on `{root}/ack`, through a real mosquitto
and a real agent (issue #16, finding 3): a forged ack, retained or not, must not release what the
backend never received, and the real watermark afterwards still brings every row."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import signing
from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from tests.broker import Mosquitto
from tests.integration.helpers import load, running_agent, write_config
from tests.observer import observing

ROOT = "bgw/v1/site-a/gw-test"


async def publish(port: int, topic: str, body: dict, *, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="forger") as client:
        await client.publish(topic, json.dumps(body).encode(), qos=1, retain=retain)


async def test_forged_acks_release_nothing_and_the_real_watermark_still_works(
        tmp_path: Path, modbus_building: tuple[ModbusBuilding, int]) -> None:
    _, modbus_port = modbus_building
    broker = Mosquitto(tmp_path)  # not started yet: the first run is an outage
    path = write_config(
        tmp_path, broker_port=broker.port, modbus_port=modbus_port,
        devices=[{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "200ms",
                  "timeout": "300ms", "points": DEMO_POINTS[1]}],
        buffer={"path": str(tmp_path / "outbox.db"), "commit_interval": "200ms",
                "release": "backend"})
    config = load(path)
    async with running_agent(config) as agent:
        async with asyncio.timeout(10):
            while agent.outbox.depth() < 12:
                await asyncio.sleep(0.1)
    db = sqlite3.connect(tmp_path / "outbox.db")
    outage = {row[0] for row in db.execute("SELECT seq FROM outbox WHERE topic LIKE '%/tm'")}
    db.close()
    assert len(outage) >= 10

    broker.start()
    try:
        # The attacker's watermark waits, retained, for the agent's subscription.
        await publish(broker.port, f"{ROOT}/ack", {"seq": 10**9}, retain=True)
        async with observing(broker.port, f"{ROOT}/dev/+/tm") as observer, \
                running_agent(config) as agent:
            await observer.wait_for(
                lambda _: outage <= {b["seq"] for b in observer.first_deliveries("/tm")})
            await publish(broker.port, f"{ROOT}/ack", {"seq": 10**9})  # live, not retained
            async with asyncio.timeout(10):
                while agent.uplink.acks.refused < 2:
                    await asyncio.sleep(0.05)
            assert agent.uplink.acks.accepted == 0
            assert agent.outbox.depth() >= len(outage)  # nothing released by the forgeries
            # The backend's real watermark: what it received, no more.
            watermark = max(outage)
            await publish(broker.port, f"{ROOT}/ack", {"seq": watermark})
            async with asyncio.timeout(10):
                while agent.uplink.acks.accepted < 1:
                    await asyncio.sleep(0.05)
            agent.outbox.commit()
            left = {row[0] for row in agent.outbox._db.execute("SELECT seq FROM outbox")}
            assert not outage & left  # delivered and acknowledged: released
            assert agent.outbox.released_upto == watermark
    finally:
        broker.stop()


async def test_with_a_command_key_only_a_signed_watermark_releases_rows(
        tmp_path: Path, broker: Mosquitto, modbus_building: tuple[ModbusBuilding, int]) -> None:
    _, modbus_port = modbus_building
    key = Ed25519PrivateKey.generate()
    (tmp_path / "ops.pub").write_bytes(signing.public_pem(key))
    path = write_config(
        tmp_path, broker_port=broker.port, modbus_port=modbus_port,
        devices=[{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "200ms",
                  "timeout": "300ms", "points": DEMO_POINTS[1]}],
        buffer={"path": str(tmp_path / "outbox.db"), "commit_interval": "200ms",
                "release": "backend"},
        commands={"public_key": str(tmp_path / "ops.pub")})
    async with observing(broker.port, f"{ROOT}/dev/+/tm") as observer, \
            running_agent(load(path)) as agent:
        await observer.wait_for(lambda _: len(observer.first_deliveries("/tm")) >= 3)
        seq = max(b["seq"] for b in observer.first_deliveries("/tm"))
        depth = agent.outbox.depth()
        await publish(broker.port, f"{ROOT}/ack", {"seq": seq})  # plausible, but unsigned
        async with asyncio.timeout(10):
            while agent.uplink.acks.refused < 1:
                await asyncio.sleep(0.05)
        assert agent.outbox.depth() >= depth
        good = signing.sign({"seq": seq, "aud": "gw-test", "exp": int(time.time()) + 60}, key)
        await publish(broker.port, f"{ROOT}/ack", good)
        async with asyncio.timeout(10):
            while agent.uplink.acks.accepted < 1:
                await asyncio.sleep(0.05)
        agent.outbox.commit()
        left = {row[0] for row in agent.outbox._db.execute("SELECT seq FROM outbox")}
        assert not {s for s in left if s <= seq}
