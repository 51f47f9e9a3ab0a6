"""A backend stand-in for the tests: a persistent MQTT session that survives broker restarts.

It subscribes with clean_session=False on a broker with persistence on, so what the agent publishes
while this observer reconnects is queued for it, as for a real backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass
class Seen:
    topic: str
    body: dict[str, Any]
    retained: bool


@dataclass
class Observer:
    port: int
    topic: str
    client_id: str = "test-observer"
    messages: list[Seen] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    raw: list[tuple[str, bytes]] = field(default_factory=list)  # payloads that are not JSON
    errors: list[str] = field(default_factory=list)  # what ended a connection besides MQTT

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.client_id,
                                          clean_session=False,
                                          protocol=aiomqtt.ProtocolVersion.V311) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = bytes(message.payload)  # type: ignore[arg-type]
                        try:
                            body = json.loads(payload)
                        except ValueError:  # kept for the test to assert on, never fatal
                            self.raw.append((str(message.topic), payload))
                            continue
                        self.messages.append(Seen(str(message.topic), body, bool(message.retain)))
                        self.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)
            except Exception as exc:  # noqa: BLE001 - recorded in `errors`, then reconnect
                self.errors.append(repr(exc))
                await asyncio.sleep(0.05)

    async def wait_for(self, predicate: Any, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.messages):
                self.changed.clear()
                await self.changed.wait()

    def bodies(self, suffix: str) -> list[dict[str, Any]]:
        return [m.body for m in self.messages if m.topic.endswith(suffix)]

    def first_deliveries(self, suffix: str = "") -> list[dict[str, Any]]:
        """What a de-duplicating backend keeps, in arrival order: the first copy of each outbox
        record (it has a seq). At-least-once delivery re-sends what was in flight when a
        connection dropped, so order is only meaningful over these first copies."""
        seen: set[int] = set()
        out: list[dict[str, Any]] = []
        for m in self.messages:
            if m.retained or "seq" not in m.body or not m.topic.endswith(suffix):
                continue
            if m.body["seq"] not in seen:
                seen.add(m.body["seq"])
                out.append(m.body)
        return out


@contextlib.asynccontextmanager
async def observing(port: int, topic: str, client_id: str = "test-observer",
                    ) -> AsyncIterator[Observer]:
    """An Observer subscribed to `topic` for the duration of the block."""
    observer = Observer(port, topic, client_id=client_id)
    task = asyncio.ensure_future(observer.run())
    await asyncio.wait_for(observer.subscribed.wait(), 10)
    try:
        yield observer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
