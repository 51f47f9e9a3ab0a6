"""A 350-byte YAML alias bomb in a config.apply left retained on cmd/req: a real agent refuses it
(quickly, memory low) at every start instead of being killed by it at every start."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.broker import Mosquitto
from tests.faults.harness import ROOT, AgentProcess, config, devices, observing
from tests.security.procmem import peak_rss
from tests.security.test_yaml_bounds import alias_bomb

MiB = 2**20


@pytest.mark.timeout(120)
async def test_a_retained_alias_bomb_is_refused_at_every_start(tmp_path: Path, building: tuple,
                                                               broker: Mosquitto) -> None:
    _, modbus_port = building
    path = config(tmp_path, broker, modbus_port, devices=devices("1s", (1,)))
    request = {"id": "bomb-1", "op": "config.apply", "args": {"config": alias_bomb()},
               "exp": int(time.time()) + 3600}
    peaks = []
    agent: AgentProcess | None = None
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="attacker") as client:
            await client.publish(f"{ROOT}/cmd/req", json.dumps(request).encode(), qos=1,
                                 retain=True)
        async with observing(broker.port) as observer:
            for start in range(3):
                agent = AgentProcess(path, tmp_path / f"agent-{start}.log")
                await agent.start()
                assert agent.proc is not None
                seen = len(observer.messages)
                await observer.wait_for(lambda ms: any(
                    m.topic.endswith("/cmd/res") for m in ms[seen:]), 20)
                await asyncio.sleep(0.5)
                peaks.append(peak_rss(agent.proc.pid))
                assert agent.alive
                assert await agent.stop() == 0
    finally:
        if agent is not None and agent.alive:
            await agent.kill()
    answers = [m.body for m in observer.messages if m.topic.endswith("/cmd/res")]
    assert len(answers) >= 3 and all(a["status"] == "rejected" for a in answers), answers
    if answers[0]["code"] == 422:  # it reached the YAML loader (unsigned commands allowed)
        assert "alias" in json.dumps(answers[0])
    assert max(peaks) < 120 * MiB, [p // MiB for p in peaks]
