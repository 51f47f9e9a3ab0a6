"""The uplink's connection loop (agent/uplink/client.py) against a real broker that goes away
and comes back: what it logs, and that it connects again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiomqtt
import pytest

from agent.uplink.client import reconnect_forever
from tests.broker import Mosquitto


class Link:
    def __init__(self) -> None:
        self.connections = 0
        self.last_error: str | None = None
        self.ended = 0
        self.changed = asyncio.Event()

    def end(self) -> None:
        self.ended += 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 15)


async def test_each_lost_connection_warns_and_the_failed_retries_stay_at_debug(
        broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    link = Link()
    log = logging.getLogger("tests.reconnect")

    async def session() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="reconnect-test") as client:
            link.connections += 1
            link.changed.set()
            await client.subscribe("nothing/comes/here")
            async for _ in client.messages:  # ends with an MqttError when the broker goes
                pass

    caplog.set_level(logging.DEBUG, logger="tests.reconnect")
    loop = asyncio.create_task(reconnect_forever(link, session, ended=link.end, cap=lambda: 0.2,
                                                 log=log))
    try:
        await link.until(lambda: link.connections == 1)
        broker.stop()
        await link.until(lambda: link.ended >= 4)  # the loss, then refused attempts
        broker.start()
        await link.until(lambda: link.connections == 2)
        broker.stop()
        ended = link.ended
        await link.until(lambda: link.ended >= ended + 2)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    levels = [r.levelno for r in caplog.records if r.name == "tests.reconnect"]
    assert levels.count(logging.WARNING) == 2, levels  # one per lost connection
    assert levels.count(logging.DEBUG) >= 3, levels  # the refused attempts in between
    assert levels[0] == logging.WARNING and levels[1] == logging.DEBUG
    assert link.last_error
