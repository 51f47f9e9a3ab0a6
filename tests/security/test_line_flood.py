"""A converter that pours 256 MiB between two polls (M-Bus, Modbus TCP): the agent's memory stays
bounded, the discarded bytes are counted in health and the agent keeps running."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.broker import Mosquitto
from tests.faults.harness import ROOT, AgentProcess
from tests.integration.helpers import write_config
from tests.observer import observing
from tests.security.procmem import peak_rss

MiB = 2**20
POURED = 256 * MiB


@pytest.mark.timeout(120)
@pytest.mark.parametrize("driver", ["mbus", "modbus-tcp"])
async def test_a_pouring_converter_does_not_fill_the_memory(tmp_path: Path, broker: Mosquitto,
                                                           driver: str) -> None:
    poured = asyncio.Event()
    sent = 0

    async def converter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        chunk = bytes(range(256)) * 4096  # 1 MiB of noise, no valid frame start runs long
        with contextlib.suppress(ConnectionError):
            while sent < POURED:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            poured.set()
            await reader.read()  # then silence, like a converter whose meter died

    server = await asyncio.start_server(converter, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    devices = [{"id": "eau-1", "bus": "meters", "address": 1, "poll": "1s", "timeout": "300ms"}]
    buses = [{"id": "meters", "driver": "mbus", "port": f"socket://127.0.0.1:{port}"}]
    if driver == "modbus-tcp":
        # pymodbus bounds its own receive buffer (its framer's largest frame) and drops the
        # rest; what the agent sees is polls that time out.
        devices[0]["points"] = [{"name": "p", "register": "holding:0", "type": "uint16"}]
        buses = [{"id": "meters", "driver": "modbus-tcp", "host": "127.0.0.1", "port": port}]
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=1, devices=devices,
                        buses=buses, health={"interval": "1s"})
    try:
        async with (AgentProcess(path, tmp_path / "agent.log") as agent,
                    observing(broker.port, f"{ROOT}/health") as observer):
            await agent.start()
            assert agent.proc is not None
            await asyncio.wait_for(poured.wait(), 60)
            seen = len(observer.messages)
            if driver == "mbus":  # every dropped byte is counted
                await observer.wait_for(lambda ms: any(
                    m.body["buses"]["meters"].get("stale_bytes", 0) >= POURED * 0.9
                    for m in ms), 30)
            else:  # two more health reports: the agent still runs its polls
                await observer.wait_for(lambda ms: len(ms) >= seen + 2, 30)
            peak = peak_rss(agent.proc.pid)
            assert agent.alive
            assert await agent.stop() == 0
    finally:
        server.close()
    print(f"agent peak RSS {peak / MiB:.0f} MiB after {sent / MiB:.0f} MiB poured")
    assert peak < 150 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
