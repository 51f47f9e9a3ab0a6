"""Test helpers for commands end to end: an in-process agent with the CommandHandler it wires
itself, and a backend stand-in that sends requests as MQTT 5 (response topic +
correlation data) or MQTT 3.1.1 (answers on cmd/res) and collects the answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.runtime import supervisor
from agent.commands import CommandHandler
from agent.config.loader import Config
from tests.integration.helpers import running_agent

ROOT = "bgw/v1/site-a/gw-test"


@contextlib.asynccontextmanager
async def agent_with_commands(config: Config
                              ) -> AsyncIterator[tuple[supervisor.Agent, CommandHandler]]:
    """A running agent and the CommandHandler it wired itself (`Agent.commands`, the one its
    uplink calls): what these tests exercise is what production runs. Handler settings (keys,
    auth) come from the config file, as in the field."""
    async with running_agent(config) as agent:
        assert agent.uplink.commands is agent.commands
        await asyncio.wait_for(agent.uplink.connected.wait(), 10)
        yield agent, agent.commands


class Backend:
    """Sends commands and gathers every answer (response topics and cmd/res)."""

    def __init__(self, client: aiomqtt.Client, v5: bool) -> None:
        self.client = client
        self.v5 = v5
        self.answers: list[tuple[str, dict[str, Any], bytes | None]] = []  # topic, body, corr
        self._changed = asyncio.Event()

    async def _collect(self) -> None:
        async for message in self.client.messages:
            props = message.properties
            corr = getattr(props, "CorrelationData", None) if props is not None else None
            assert isinstance(message.payload, bytes)
            self.answers.append((str(message.topic), json.loads(message.payload), corr))
            self._changed.set()

    async def send(self, payload: bytes, *, reply_to: str | None = None,
                   correlation: bytes | None = None) -> None:
        props = None
        if reply_to is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_to
            if correlation is not None:
                props.CorrelationData = correlation
        await self.client.publish(f"{ROOT}/cmd/req", payload, qos=1, properties=props)

    async def wait_for(self, cmd_id: str | None, count: int = 1, timeout: float = 5.0
                       ) -> list[tuple[str, dict[str, Any], bytes | None]]:
        async with asyncio.timeout(timeout):
            while True:
                found = [a for a in self.answers if a[1].get("id") == cmd_id]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def ask(self, body: dict[str, Any], *, reply_to: str | None = None,
                  correlation: bytes | None = None, timeout: float = 8.0) -> dict[str, Any]:
        """Send and wait for the answer; re-sends the same request (same id: idempotent) while
        the agent may not have subscribed yet."""
        async with asyncio.timeout(timeout):
            while True:
                await self.send(json.dumps(body).encode(), reply_to=reply_to,
                                correlation=correlation)
                with contextlib.suppress(TimeoutError):
                    found = await self.wait_for(body["id"], timeout=1.0)
                    return found[0][1]


@contextlib.asynccontextmanager
async def backend(port: int, *, v5: bool = True, reply_prefix: str = "backend/replies"
                  ) -> AsyncIterator[Backend]:
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", port, protocol=protocol,
                              identifier=f"backend-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(f"{reply_prefix}/#", qos=1)
        await client.subscribe(f"{ROOT}/cmd/res", qos=1)
        peer = Backend(client, v5)
        collector = asyncio.ensure_future(peer._collect())
        try:
            yield peer
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await collector
