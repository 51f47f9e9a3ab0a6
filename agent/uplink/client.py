"""The MQTT client both uplink sessions use (the native one in session.py, Sparkplug's in
sparkplug.py), and the connection loop they share.

Each session is: build a client (same broker, credentials, TLS, window), hold the connection
while the session's own work runs, and when it drops, back off with jitter and start again.
Only what differs between the two sessions (client id, Will, what to do once connected, what to
reset when the connection ends) stays with them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from agent.config.loader import Config
from agent.uplink.mqtt_guard import PacketGuard

WINDOW = 32  # QoS 1 publishes in flight at once: a slow link drains a backlog WINDOW times faster


class Client(aiomqtt.Client):
    """aiomqtt 2.5 completes a QoS 1 publish even when the PUBACK carries a failure code; this
    keeps the code per message id so the outbox deletes only what the broker really accepted."""

    def __init__(self, *args: Any, max_packet: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._puback: dict[int, Any] = {}
        self.abandon = False  # leave without DISCONNECT, so that the broker sends the Will
        self.guard = PacketGuard(self._client, max_packet)  # mqtt_guard.py

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """A clean DISCONNECT tells the broker to discard the Last Will; an agent that dies of a
        bug must not send one, or the retained state says online forever. Dropping the socket
        is what a crash looks like to the broker, under MQTT 3.1.1 and 5 alike."""
        if not self.abandon or self._disconnected.done():
            await super().__aexit__(exc_type, exc, tb)
            return
        self._client._sock_close()  # noqa: SLF001 - paho has no public "drop the connection"
        self._disconnected.set_result(None)
        if self._lock.locked():
            self._lock.release()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._puback[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def puback(self, mid: int) -> tuple[int, str]:
        """The PUBACK of message `mid` once it came: (reason code value, reason name)."""
        code = self._puback.pop(mid, None)
        if code is None or not hasattr(code, "value"):
            return 0, "Success"
        return int(code.value), str(code)

    async def publish_checked(self, topic: str, payload: bytes, *, retain: bool = False,
                              qos: int = 1, timeout: float = 30.0,
                              properties: Properties | None = None) -> tuple[int, str]:
        """Publish and return the PUBACK (reason code value, reason name)."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        if not info.is_published():
            done = asyncio.Event()
            with self._pending_call(info.mid, done, self._pending_publishes):
                await self._wait_for(done.wait(), timeout=timeout)
        return self.puback(info.mid)


def tls_context(config: Config) -> ssl.SSLContext | None:
    tls = config.mqtt.tls
    if tls is None:
        return None
    # Server verification is always on: a default context checks the chain and the host name.
    ctx = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    if tls.cert and tls.key:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def protocol_version(config: Config) -> aiomqtt.ProtocolVersion:
    return (aiomqtt.ProtocolVersion.V5 if config.mqtt.protocol == "5"
            else aiomqtt.ProtocolVersion.V311)


C = TypeVar("C", bound=Client)


def make_client(config: Config, kind: type[C], *, identifier: str, will: aiomqtt.Will,
                max_packet: int, logger: logging.Logger, **extra: Any) -> C:
    """A client of `kind` for the configured broker: credentials, TLS, keepalive, the WINDOW.
    `extra`: what one session adds (CONNECT properties, clean start)."""
    mqtt = config.mqtt
    client = kind(
        mqtt.host, mqtt.port, identifier=identifier, protocol=protocol_version(config),
        max_packet=max_packet, username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        will=will, keepalive=int(mqtt.keepalive), tls_context=tls_context(config),
        timeout=10, max_inflight_messages=WINDOW, logger=logger, **extra)
    client.pending_calls_threshold = 4 * WINDOW  # aiomqtt warns past this; WINDOW is by design
    return client


async def hold(client: C, connected: Callable[[C], Awaitable[None]],
               stopping_cleanly: Callable[[], bool]) -> None:
    """Connect, run `connected(client)` until the connection ends, disconnect.

    Cancelled by a failing sibling task, or a bug in the session: not a clean stop, so leave
    without DISCONNECT and let the broker send the Will (a lost connection is an MqttError; the
    session's graceful_offline has run before a clean stop)."""
    async with client:
        try:
            await connected(client)
        except BaseException as exc:
            client.abandon = not (stopping_cleanly() or isinstance(exc, aiomqtt.MqttError))
            raise


def reconnect_delay(failures: int, cap: float) -> float:
    """Exponential backoff with full jitter, so a thousand gateways that lost the same broker do
    not all come back in the same second."""
    return min(cap, 0.25 * 2 ** min(failures, 12)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


class Link(Protocol):
    """What the connection loop reads and writes of a session."""

    connections: int  # +1 each time the session got connected
    last_error: str | None


async def reconnect_forever(link: Link, session: Callable[[], Awaitable[None]], *,
                            ended: Callable[[], None], cap: Callable[[], float],
                            log: logging.Logger, label: str = "") -> None:
    """Run `session` again and again: after each end, `ended()` resets what belonged to the
    connection, then a backoff (restarting from the shortest delay once a session connected)."""
    failures = 0
    while True:
        connections = link.connections
        try:
            await session()
        except aiomqtt.MqttError as exc:
            link.last_error = str(exc)
            # A warning for the first failure and for each connection lost after it was up; the
            # attempts that fail while the broker stays away only at debug level.
            lost = link.connections > connections
            level = logging.WARNING if failures == 0 or lost else logging.DEBUG
            log.log(level, "%sbroker unreachable or connection lost: %s", label, exc)
        finally:
            ended()
        failures = 1 if link.connections > connections else failures + 1
        await asyncio.sleep(reconnect_delay(failures, cap()))


async def watch(host: str, port: int, topic: str, *, protocol: str = "5",
                ) -> AsyncIterator[tuple[str, bytes, bool]]:
    """Subscribe to `topic` on a plain local broker and yield (topic, payload, retained): the demo's
    live view and the tests' observer use it, so they too stay out of aiomqtt's API."""
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(host, port, protocol=version) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload).encode()
            yield str(message.topic), payload, bool(message.retain)
