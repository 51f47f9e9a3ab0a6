"""A 100 MB message on cmd/req: the agent never holds it in memory. MQTT 5: the limit is announced
in CONNECT and the broker drops the message; MQTT 3.1.1: the agent drops it while reading and
answers 413. Either way the agent stays up and answers the next command."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from tests.broker import Mosquitto
from tests.faults.harness import ROOT, AgentProcess, config, devices, observing
from tests.security.procmem import peak_rss

MiB = 2**20


async def publish(port: int, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="attacker", timeout=60,
                              protocol=aiomqtt.ProtocolVersion.V311) as client:
        await client.publish(f"{ROOT}/cmd/req", payload, qos=1, timeout=60)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_100_mb_command_is_never_buffered_whole(tmp_path: Path, building: tuple,
                                                        broker: Mosquitto, protocol: str
                                                        ) -> None:
    _, modbus_port = building
    path = config(tmp_path, broker, modbus_port, devices=devices("1s", (1,)),
                  mqtt={"protocol": protocol})
    async with AgentProcess(path, tmp_path / "agent.log") as agent:
        async with observing(broker.port) as observer:
            await agent.start()
            assert agent.proc is not None
            await observer.wait_for(lambda ms: any(m.topic.endswith("/state") for m in ms), 20)
            before = peak_rss(agent.proc.pid)
            big = b'{"id": "big-1", "op": "ping", "args": {"pad": "' + b"x" * (100 * MiB) + b'"}}'
            await publish(broker.port, big)
            del big
            ping = json.dumps({"id": "after-1", "op": "ping"}).encode()
            await publish(broker.port, ping)
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/cmd/res") and m.body.get("id") == "after-1" for m in ms), 60)
            peak = peak_rss(agent.proc.pid)
            assert agent.alive
            assert await agent.stop() == 0
    answers = [m.body for m in observer.messages if m.topic.endswith("/cmd/res")]
    print(f"MQTT {protocol}: agent peak RSS {before / MiB:.0f} -> {peak / MiB:.0f} MiB")
    assert peak - before < 20 * MiB, f"{before / MiB:.0f} -> {peak / MiB:.0f} MiB"
    if protocol == "3.1.1":  # the agent saw the message: it says why it refused it
        [refusal] = [a for a in answers if a["code"] == 413]
        assert "mqtt.max_packet_kb" in refusal["error"] and refusal["status"] == "rejected"
    else:  # the broker knew the limit and never sent it
        assert [a["id"] for a in answers] == ["after-1"]
