"""The native MQTT session (agent/uplink/ is the only package that imports aiomqtt; the client
and the reconnect loop are in client.py, shared with the Sparkplug session).

One long-lived loop: connect (TLS, Last Will), announce (`state` online, `birth`), then drain the
outbox in order while answering commands; on any connection error, back off with jitter and start
again. Being offline is a normal state: the drivers keep polling into the outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.commands import signing
from agent.commands.models import Code, Problem, answer
from agent.config.loader import Config
from agent.store.outbox import PRIO_TELEMETRY, Message, Outbox
from agent.uplink import senml
from agent.uplink.client import WINDOW, Client, hold, make_client, reconnect_forever, watch
from agent.uplink.pacing import Pacer
from agent.uplink.watermark import WatermarkGate

# WINDOW and watch are still imported from here by the demo and the tests.
__all__ = ["COMMANDS_AT_ONCE", "WINDOW", "CommandHandler", "PublishRefused", "Uplink", "watch"]

log = logging.getLogger(__name__)

COMMANDS_AT_ONCE = 4  # commands carried out together; more wait (see _serve_commands)
CommandHandler = Callable[[bytes], Awaitable[dict[str, Any] | None]]


class PublishRefused(Exception):
    """The broker answered a PUBACK with a failure reason code (MQTT 5), e.g. not authorized."""

    def __init__(self, seq: int, code: int, reason: str) -> None:
        super().__init__(f"broker refused seq {seq}: {reason} (0x{code:02x})")
        self.code = code


class Uplink:
    def __init__(self, config: Config, outbox: Outbox, *, session: int,
                 birth: Callable[[], dict[str, Any]], clock: Callable[[], float],
                 commands: CommandHandler | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.session = session
        self.birth = birth
        self.commands = commands
        self.wire: Any = None  # agent.wire.Wire: the profiles besides native (set by the agent)
        # agent.uplink_sparkplug.SparkplugLink: the sparkplug profile's own session (its NDEATH
        # is that session's Will), set by the agent when `mqtt.profiles` lists it
        self.sparkplug: Any = None
        self._clock = clock
        self.root = config.root
        self.connected = asyncio.Event()
        self.connections = 0
        self.published = 0
        self.refused = 0
        self.last_error: str | None = None
        self._client: Client | None = None
        self._stopping_cleanly = False  # graceful_offline ran: the DISCONNECT may be clean
        self.max_packet = int(config.mqtt.max_packet_kb * 1024)
        self.oversized = 0  # messages refused because they were over max_packet
        self._hist_until = 0  # seqs up to this one were held back by an outage: hist = true
        key = config.commands.public_key
        self.acks = WatermarkGate(config.gateway.id, signing.load_public_key(key) if key else None,
                                  clock=clock, skew=config.commands.skew)

    @property
    def held_back_until(self) -> int:
        """Messages up to this seq were held back by an outage: they go out with hist true."""
        return self._hist_until

    # -- connection loop ------------------------------------------------------------------------

    async def run(self) -> None:
        await reconnect_forever(self, self._session, ended=self._ended, log=log,
                                cap=lambda: self.config.mqtt.reconnect_max)

    def _ended(self) -> None:
        self.connected.clear()
        self._client = None

    def _will(self) -> aiomqtt.Will:
        # Registered at CONNECT, published by the broker later: `ts` is the connection time and
        # `will: true` says so (the backend takes the time it received it as the offline time).
        offline = {"online": False, "sess": self.session, "ts": round(self._clock(), 3),
                   "will": True}
        return aiomqtt.Will(f"{self.root}/state", senml.encode(offline, self._encoding), qos=1,
                            retain=True, properties=self._format(PacketTypes.WILLMESSAGE))

    @property
    def _encoding(self) -> str:
        return self.config.mqtt.encoding

    def _format(self, packet: int = PacketTypes.PUBLISH,
                encoding: str | None = None) -> Properties | None:
        """MQTT 5 content type and payload format indicator (UTF-8 for JSON) of a message."""
        if self.config.mqtt.protocol != "5":
            return None
        encoding = encoding or self._encoding
        props = Properties(packet)
        props.ContentType = senml.CONTENT_TYPES[encoding]
        props.PayloadFormatIndicator = 1 if encoding == "json" else 0
        return props

    async def _session(self) -> None:
        connect_props = None
        if self.config.mqtt.protocol == "5":  # the broker must not send more (MQTT 5 §3.1.2.11.4)
            connect_props = Properties(PacketTypes.CONNECT)
            connect_props.MaximumPacketSize = self.max_packet
        client = make_client(self.config, Client, identifier=self.config.gateway.id,
                             will=self._will(), max_packet=self.max_packet,
                             logger=logging.getLogger("batigate.mqtt"), properties=connect_props)
        await hold(client, self._connected_session, lambda: self._stopping_cleanly)

    async def _connected_session(self, client: Client) -> None:
        mqtt = self.config.mqtt
        self._client = client
        self.connections += 1
        self._hist_until = self.outbox.last_committed_seq()
        log.info("connected to %s:%d (session %d)", mqtt.host, mqtt.port, self.session)
        await self._announce(client)
        self.connected.set()
        try:
            async with asyncio.TaskGroup() as tg:  # scoped to this one connection
                if self.commands is not None:
                    await client.subscribe(f"{self.root}/cmd/req", qos=1)
                    tg.create_task(self._serve_commands(client, tg), name="commands")
                await self._wire_subscribe(client, tg)
                tg.create_task(self._drain(client), name="drain")
        except* aiomqtt.MqttError as lost:
            raise lost.exceptions[0] from None  # a lost connection: `run` reconnects

    async def _announce(self, client: Client) -> None:
        online = {"online": True, "sess": self.session, "ts": round(self._clock(), 3)}
        await client.publish_checked(f"{self.root}/state", senml.encode(online, self._encoding),
                                     retain=True, properties=self._format())
        await self.rebirth(sparkplug=False)  # its births go with its own session

    async def rebirth(self, *, sparkplug: bool = True) -> None:
        if self._client is not None:
            await self._client.publish_checked(
                f"{self.root}/birth", senml.encode(self.birth(), self.config.mqtt.encoding),
                retain=True, properties=self._format())
            for topic, payload, retain in self.wire.announce() if self.wire else ():
                await self._client.publish_checked(topic, payload, retain=retain,
                                                   properties=self._format(encoding="json"))
        if sparkplug and self.sparkplug is not None:
            await self.sparkplug.rebirth()

    async def publish_direct(self, topic: str, body: dict[str, Any], *, qos: int = 0) -> bool:
        """Fire-and-forget for what must not be buffered (health); False when offline."""
        if self._client is None:
            return False
        await self._client.publish(f"{self.root}/{topic}",
                                   senml.encode(body, self.config.mqtt.encoding), qos=qos,
                                   properties=self._format())
        return True

    async def graceful_offline(self) -> None:
        """On a clean stop, say offline ourselves (the Will only covers crashes)."""
        self._stopping_cleanly = True
        if self.sparkplug is not None:
            await self.sparkplug.graceful_offline()
        if self._client is None:
            return
        offline = {"online": False, "sess": self.session, "ts": round(self._clock(), 3)}
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await self._client.publish_checked(f"{self.root}/state",
                                               senml.encode(offline, self._encoding),
                                               retain=True, timeout=2,
                                               properties=self._format())

    # -- delivery -------------------------------------------------------------------------------

    def payload(self, message: Message) -> bytes:
        envelope = {"v": 1, "gw": self.config.gateway.id, "sess": message.sess, "seq": message.seq,
                    "mid": message.mid, "ts": message.ts, "hist": message.seq <= self._hist_until}
        if self.config.mqtt.encoding == "json" and message.body.startswith(b"{\"e\":"):
            # Telemetry, the bulk: splice the stored JSON body in rather than parse and re-encode
            # it (its keys never clash with the envelope's).
            head = senml.encode(envelope, "json")
            return head[:-1] + b"," + message.body[1:]
        envelope.update(message.fields())
        return senml.encode(envelope, self.config.mqtt.encoding)

    async def _drain(self, client: Client) -> None:
        refusals = 0
        buffer = self.config.buffer
        # An outage's backlog drains at a bounded rate: live telemetry and alarms are not starved.
        pacer = Pacer(buffer.backlog_rate, buffer.backlog_burst)
        if buffer.release == "backend":
            # End-to-end mode: the backend's watermark on {root}/ack releases rows, not the PUBACK.
            # A topic callback keeps these messages out of the command stream; paho runs it on the
            # event loop, where aiomqtt reads the socket.
            self.outbox.rewind()  # unreleased rows of an earlier connection go out again

            def on_ack(_client: Any, _userdata: Any, message: Any) -> None:
                seq = self.acks.judge(message.payload, retained=bool(message.retain),
                                      highest_published=self.outbox.highest_published)
                if seq is not None:
                    self.outbox.release_upto(seq)

            client._client.message_callback_add(f"{self.root}/ack", on_ack)  # noqa: SLF001
            await client.subscribe(f"{self.root}/ack", qos=1)
        while True:
            await self.outbox.committed.wait()
            batch = self.outbox.peek(WINDOW, hist_until=self._hist_until,
                                     hist_budget=pacer.available())
            if not batch:
                if self.outbox.throttled:  # only backlog is left: wait for the pacer
                    await asyncio.sleep(pacer.wait())
                continue
            pacer.spend(sum(1 for m in batch
                            if m.prio == PRIO_TELEMETRY and m.seq <= self._hist_until))
            results = await asyncio.gather(*(self._deliver(client, m) for m in batch),
                                           return_exceptions=True)
            accepted: list[Message] = []
            refused: list[PublishRefused] = []
            lost: BaseException | None = None
            for message, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    lost = lost or result
                elif result[0] >= 0x80:
                    refused.append(PublishRefused(message.seq, *result))
                else:
                    accepted.append(message)
            self.outbox.ack(accepted)
            self.published += len(accepted)
            if lost is not None:
                raise lost
            if refused:
                # The broker says no (ACL, quota): the messages stay in the outbox; retry slowly.
                self.refused += len(refused)
                refusals += 1
                self.last_error = str(refused[0])
                log.error("%s; %d message(s) kept in the outbox", refused[0], len(refused))
                await asyncio.sleep(min(self.config.mqtt.reconnect_max, 2 ** min(refusals, 6)))
            else:
                refusals = 0

    async def _deliver(self, client: Client, message: Message) -> tuple[int, str]:
        """The native message and what each wire profile makes of it (agent/wire/), published
        in order; the worst PUBACK: the row leaves the outbox only if the broker took them all."""
        sends = [client.publish_checked(f"{self.root}/{message.topic}", self.payload(message),
                                        retain=message.retain, properties=self._format())]
        if self.wire:  # the platforms' own formats are JSON whatever the native encoding
            sends += [client.publish_checked(topic, payload, retain=retain,
                                             properties=self._format(encoding="json"))
                      for topic, payload, retain in self.wire.render(
                          message, message.seq <= self._hist_until)]
        if self.sparkplug is not None:  # on its own session; waits until that one is ready
            sends.append(self.sparkplug.deliver(message, message.seq <= self._hist_until))
        return max(await asyncio.gather(*sends))

    async def _wire_subscribe(self, client: Client, tg: asyncio.TaskGroup) -> None:
        """What a platform sends back (Home Assistant set topics) goes to its profile through a
        topic callback, never into the command stream."""
        async def answer(topic: str, payload: bytes) -> None:  # e.g. a ThingsBoard RPC reply
            for reply, body, retain in await self.wire.on_message(topic, payload):
                await client.publish_checked(reply, body, retain=retain)

        def on_message(_client: Any, _userdata: Any, message: Any) -> None:
            tg.create_task(answer(message.topic, bytes(message.payload)), name="wire")

        for topic in self.wire.subscriptions() if self.wire else ():
            client._client.message_callback_add(topic, on_message)  # noqa: SLF001
            await client.subscribe(topic, qos=1)

    async def _serve_commands(self, client: Client, tg: asyncio.TaskGroup) -> None:
        """Each command runs in a task of the connection's group, so a long one (an update
        install, a read from a slow meter) never holds up a `ping` or an `alarm.ack`; at most
        COMMANDS_AT_ONCE run together, then the next waits for a free slot."""
        assert self.commands is not None
        slots = asyncio.Semaphore(COMMANDS_AT_ONCE)
        async for message in client.messages:
            await slots.acquire()
            tg.create_task(self._answer(client, message, slots), name="command")

    async def _answer(self, client: Client, message: aiomqtt.Message,
                      slots: asyncio.Semaphore) -> None:
        assert self.commands is not None
        try:
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload).encode()
            size = client.guard.cut.pop(message.mid, None) if not payload else None
            if size is not None:
                self.oversized += 1
                log.warning("command message of %d bytes refused (mqtt.max_packet_kb: %d)",
                            size, self.max_packet // 1024)
                response = answer(None, Problem(Code.TOO_LARGE, f"{size} bytes; MQTT messages "
                                                f"of at most {self.max_packet} bytes are "
                                                f"accepted (mqtt.max_packet_kb)"),
                                  op=None, ts=self._clock())
            else:
                response = await self.commands(payload)
            if response is None:
                return
            props = message.properties
            topic = f"{self.root}/cmd/res"
            reply_props = self._format(encoding="json")  # answers stay JSON, like requests
            wanted = getattr(props, "ResponseTopic", None) if props is not None else None
            if wanted and _publishable(wanted):
                topic = wanted
                if getattr(props, "CorrelationData", None):
                    reply_props = reply_props or Properties(PacketTypes.PUBLISH)
                    reply_props.CorrelationData = props.CorrelationData
            elif wanted:  # a wildcard would make paho raise and end the session: answer here
                log.warning("command response topic %r is not a valid topic: answering on "
                            "%s", wanted[:200], topic)
            await client.publish(topic, senml.encode(response, "json"), qos=1,
                                 properties=reply_props)
        finally:
            slots.release()


def _publishable(topic: str) -> bool:
    """MQTT 3.1.1/5 §4.7: a topic to publish to has no wildcards, no NUL, 1..65535 bytes."""
    return (0 < len(topic.encode("utf-8", errors="replace")) <= 65535
            and not any(c in topic for c in "+#\0"))

