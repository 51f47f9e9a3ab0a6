"""The operator's connection to the broker: options, one MQTT 5 client, and a dispatcher that
hands each incoming message to the listeners whose topic filter matches.

The remote tools never talk to a gateway directly, only to the broker the gateways use; what they
know of the fleet is what the gateways publish (retained `state`, `birth`, `alarms`, the latest
`health`, `cmd/res`). Payloads are decoded as the agent writes them: JSON, or CBOR for gateways
with `mqtt.encoding: cbor`; anything else is counted and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2

from agent.wire import topic_matches as matches  # one MQTT filter rule for agent and operator

MAX_PAYLOAD = 4 << 20  # a birth of a large building is tens of kB; more is not ours


@dataclass(frozen=True)
class BrokerOptions:
    host: str
    port: int = 8883
    tls: bool = True
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = None
    namespace: str = "bgw/v1"
    timeout: float = 10.0

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        # Server certificates are always verified, as on the gateways.
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert and self.key:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@dataclass(frozen=True)
class Received:
    topic: str
    body: Any
    retained: bool


def decode(payload: bytes) -> Any:
    """JSON or CBOR, as the agent encodes; ValueError otherwise."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        return cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, EOFError) as exc:
        raise ValueError(f"neither JSON nor CBOR: {exc}") from None


class Link:
    """A connected client; `listen(filter)` gives a queue of the matching messages."""

    def __init__(self, client: aiomqtt.Client, options: BrokerOptions) -> None:
        self.client = client
        self.options = options
        self.undecodable = 0
        self._listeners: list[tuple[str, asyncio.Queue[Received]]] = []

    def root(self, site: str, gateway: str) -> str:
        return f"{self.options.namespace}/{site}/{gateway}"

    async def listen(self, topic_filter: str) -> asyncio.Queue[Received]:
        """Subscribe (QoS 1) and return the queue that gets every matching message from now on,
        retained ones first."""
        queue: asyncio.Queue[Received] = asyncio.Queue()
        self._listeners.append((topic_filter, queue))
        await self.client.subscribe(topic_filter, qos=1)
        return queue

    async def publish(self, topic: str, body: dict[str, Any]) -> None:
        await self.client.publish(topic, json.dumps(body).encode(), qos=1)

    async def _dispatch(self) -> None:
        async for message in self.client.messages:
            topic = str(message.topic)
            try:
                body = decode(bytes(message.payload))  # type: ignore[arg-type]
            except ValueError:
                self.undecodable += 1
                continue
            seen = Received(topic, body, bool(message.retain))
            for pattern, queue in self._listeners:
                if matches(pattern, topic):
                    queue.put_nowait(seen)


@contextlib.asynccontextmanager
async def connect(options: BrokerOptions) -> AsyncIterator[Link]:
    """Raise ConnectionError with the reason when the broker cannot be reached."""
    identifier = f"batigate-remote-{socket.gethostname()[:20]}-{uuid.uuid4().hex[:8]}"
    client = aiomqtt.Client(options.host, options.port, identifier=identifier,
                            protocol=aiomqtt.ProtocolVersion.V5, username=options.username,
                            password=options.password, tls_context=options.tls_context(),
                            timeout=options.timeout, clean_session=None)
    try:
        await client.__aenter__()
    except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
        raise ConnectionError(f"cannot reach the broker {options.host}:{options.port}: {exc}"
                              ) from None
    link = Link(client, options)
    dispatcher = asyncio.ensure_future(link._dispatch())
    try:
        yield link
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await dispatcher
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)


async def drain_retained(queue: asyncio.Queue[Received], *, quiet: float = 0.5,
                         limit: float = 5.0, on: Callable[[Received], None]) -> None:
    """Feed `on` with what the broker sends right after a subscription (the retained messages)
    until nothing came for `quiet` seconds, or `limit` passed: MQTT has no end-of-retained mark."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while (left := end - loop.time()) > 0:
        try:
            on(await asyncio.wait_for(queue.get(), min(quiet, left)))
        except TimeoutError:
            return


def operator_name() -> str:
    """Who sends the commands (`by` in the gateway's audit trail)."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "operator"
    return f"{user}@{socket.gethostname()}"[:64]
