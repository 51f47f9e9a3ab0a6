"""An oversized message on {root}/ack (backend release mode) is blanked before the watermark
callback sees it: a truncated head that happens to be valid JSON never releases rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from tests.broker import Mosquitto
from tests.faults.harness import ROOT, AgentProcess, config, devices, observing

MiB = 2**20


@pytest.mark.timeout(120)
async def test_an_oversized_ack_releases_nothing(tmp_path: Path, building: tuple,
                                                broker: Mosquitto) -> None:
    _, modbus_port = building
    path = config(tmp_path, broker, modbus_port, devices=devices("200ms", (1,)),
                  buffer={"release": "backend"},
                  mqtt={"protocol": "3.1.1", "max_packet_kb": 64})
    async with AgentProcess(path, tmp_path / "agent.log") as agent:
        async with observing(broker.port) as observer:
            await agent.start()
            await observer.wait_for(lambda ms: sum(m.topic.endswith("/tm") for m in ms) >= 5, 20)
            published = max(m.body["seq"] for m in observer.messages if m.topic.endswith("/tm"))
            # valid JSON in its first 64 KiB, padded with spaces past the limit
            forged = b'{"seq": %d}' % published + b" " * MiB  # plausible, but cut
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="forger",
                                      protocol=aiomqtt.ProtocolVersion.V311) as client:
                await client.publish(f"{ROOT}/ack", forged, qos=1)
            await asyncio.sleep(1.5)
            assert agent.alive
            assert await agent.stop() == 0
    import sqlite3  # noqa: PLC0415

    db = sqlite3.connect(tmp_path / "outbox.db")
    kept = db.execute("SELECT COUNT(*) FROM outbox WHERE seq <= ? AND prio = 2",
                      (published,)).fetchone()[0]
    db.close()
    # nothing released them but the forged watermark: they must all still be there
    assert kept >= 5, "the forged, oversized watermark released rows"
