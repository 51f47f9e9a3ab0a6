"""An agent that dies of an unexpected exception leaves `online: false` on the broker: it must not
send a clean DISCONNECT (which discards the Last Will)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from agent.uplink.session import watch
from tests.broker import Mosquitto
from tests.faults.harness import ENV, ROOT, AgentProcess, config, devices, observing


async def retained_state(port: int) -> dict:
    async with asyncio.timeout(10):
        async for topic, payload, retained in watch("127.0.0.1", port, f"{ROOT}/state"):
            assert retained
            return json.loads(payload)
    raise AssertionError("no retained state")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_crash_leaves_the_retained_state_offline(tmp_path: Path, building: tuple,
                                                         broker: Mosquitto, protocol: str
                                                         ) -> None:
    _, modbus_port = building
    path = config(tmp_path, broker, modbus_port, devices=devices("200ms", (1,)),
                  mqtt={"protocol": protocol})
    async with AgentProcess(path, tmp_path / "agent.log") as agent:
        async with observing(broker.port) as observer:
            log = agent.log.open("ab")
            agent.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.security.crashing_agent", "run", "--config",
                str(path), env={**ENV, "BATIGATE_CRASH_AFTER": "2"}, stderr=log)
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/state") and m.body.get("online") for m in ms), 15)
            code = await asyncio.wait_for(agent.proc.wait(), 30)
            log.close()
            assert code != 0, "the injected bug must end the agent with a failure"
            assert "InjectedBug" in agent.log.read_text()
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/state") and m.body.get("online") is False for m in ms), 15)
            state = await retained_state(broker.port)
    assert state["online"] is False
