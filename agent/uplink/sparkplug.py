"""The Sparkplug B connection: a second MQTT session beside the native one (session.py), on the
same client and reconnect loop (client.py).

Sparkplug's NDEATH must be the MQTT Will of the session that published the NBIRTH, and the
native session's Will is `{root}/state`: so the `sparkplug` profile has its own client (id
`{gateway}-spb`, clean start, same broker, credentials and TLS). Each connection:

    bdSeq = stored + 1 (mod 256), stored before CONNECT, so a crash never reuses it
    CONNECT with Will NDEATH {bdSeq}  ─► subscribe NCMD, DCMD (and STATE of the primary host)
    [wait for the primary host online] ─► NBIRTH (seq 0, bdSeq) ─► DBIRTHs ─► ready

The native drain hands every outbox row to `deliver`, which waits until this session is ready,
publishes what agent/wire/sparkplug.py makes of the row (seq 0..255 per node, numbered at the
moment the message is queued, so the numbering is the order on the wire) and returns once the
broker acknowledged it: the row leaves the outbox only then. A session lost before the PUBACK
makes `deliver` wait for the next session (new births) and send again. Messages are QoS 1, not
the QoS 0 the specification asks of births and data: with QoS 0 a row would leave the outbox on
a write to a socket that may already be dead (documented in the README).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from agent.runtime.context import AgentContext
from agent.store.outbox import Message, Outbox
from agent.uplink.client import Client, hold, make_client, reconnect_forever
from agent.wire import sparkplug_pb
from agent.wire.sparkplug import NAMESPACE, REBIRTH, Sparkplug

log = logging.getLogger(__name__)

BDSEQ_KEY = "sparkplug.bdseq"
WRITES_AT_ONCE = 4
MAX_STATE = 1024  # bytes of a STATE payload


class _SparkplugClient(Client):
    def enqueue(self, topic: str, payload: bytes) -> Awaitable[tuple[int, str]]:
        """Queue a QoS 1 publish now (so the wire order is the call order), return its PUBACK."""
        info = self._client.publish(topic, payload, 1, False)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")

        async def acknowledged() -> tuple[int, str]:
            if not info.is_published():
                done = asyncio.Event()
                with self._pending_call(info.mid, done, self._pending_publishes):
                    await done.wait()
            return self.puback(info.mid)

        return acknowledged()


class SparkplugLink:
    def __init__(self, agent: AgentContext, outbox: Outbox) -> None:
        self.agent = agent
        self.outbox = outbox
        self.profile = Sparkplug(agent)
        self.ready = asyncio.Event()  # births sent (and the primary host online)
        self.bdseq = -1
        self.connections = 0
        self.published = 0
        self.rebirths = 0
        self.dropped = 0  # commands refused (malformed, not allowed)
        self.last_error: str | None = None
        self._stopping_cleanly = False  # graceful_offline ran: the DISCONNECT may be clean
        self._client: _SparkplugClient | None = None
        self._seq = 0
        self._lost = asyncio.Event()  # the current session ended
        self._hist_until = 0  # rows committed before this session was ready: is_historical
        self._host_online = False
        self._host_ts = -1
        self._connected = False  # the broker accepted the CONNECT carrying self.bdseq

    def stats(self) -> dict[str, Any]:
        """For health: the session, what it published, and what hosts sent that was refused."""
        return {"connections": self.connections, "bdseq": self.bdseq, "ready": self.ready.is_set(),
                "published": self.published, "rebirths": self.rebirths,
                "commands_refused": self.dropped}

    @property
    def config(self) -> Any:
        return self.agent.config.mqtt.sparkplug

    def _now_ms(self) -> int:
        return round(self.agent.clock.time() * 1000)

    # -- connection loop ------------------------------------------------------------------------

    async def run(self) -> None:
        await reconnect_forever(self, self._session, ended=self._ended, log=log,
                                cap=lambda: self.agent.config.mqtt.reconnect_max,
                                label="sparkplug: ")

    def _ended(self) -> None:
        self.ready.clear()
        self._lost.set()
        self._client = None

    def _next_bdseq(self) -> int:
        """+1 per CONNECT the broker accepted (§ bdSeq): an attempt that never connected (broker
        down) registered no Will, so the next one reuses its value."""
        if self.bdseq >= 0 and not self._connected:
            return self.bdseq
        stored = self.outbox.get_meta(BDSEQ_KEY)
        bdseq = 0 if stored is None else (int(stored) + 1) % 256
        self.outbox.commit(meta={BDSEQ_KEY: bdseq})  # before CONNECT: a crash never reuses it
        self._connected = False
        return bdseq

    async def _session(self) -> None:
        self.bdseq = self._next_bdseq()
        will = aiomqtt.Will(self.profile.topic("NDEATH"),
                            sparkplug_pb.encode(self._now_ms(), self.profile.ndeath(self.bdseq),
                                                None), qos=1, retain=False)
        v5 = self.agent.config.mqtt.protocol == "5"
        client = make_client(
            self.agent.config, _SparkplugClient, identifier=f"{self.agent.config.gateway.id}-spb",
            will=will, max_packet=self.agent.uplink.max_packet,
            logger=logging.getLogger("batigate.mqtt.sparkplug"),
            clean_session=None if v5 else True,
            clean_start=True if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY)
        self._lost = asyncio.Event()
        # Leaving on a bug or a failing sibling task drops the connection without DISCONNECT, so
        # that the broker sends the NDEATH Will (client.hold).
        await hold(client, self._connected_session, lambda: self._stopping_cleanly)

    async def _connected_session(self, client: _SparkplugClient) -> None:
        self._client = client
        self._connected = True
        self.connections += 1
        self._host_online = False
        log.info("sparkplug: connected as %s/%s (bdSeq %d)", self.profile.group,
                 self.profile.node, self.bdseq)
        # Subscribed before NBIRTH: a rebirth request is answered from the first message.
        await client.subscribe(self.profile.topic("NCMD"), qos=1)
        await client.subscribe(self.profile.topic("DCMD") + "/+", qos=1)
        if self.config.primary_host:
            await client.subscribe(f"{NAMESPACE}/STATE/{self.config.primary_host}", qos=1)
        else:
            await self._birth()
        try:
            async with asyncio.TaskGroup() as tg:
                writes = asyncio.Semaphore(WRITES_AT_ONCE)
                async for message in client.messages:
                    await self._on_message(client, message, tg, writes)
        except* aiomqtt.MqttError as lost:
            raise lost.exceptions[0] from None

    async def _birth(self) -> None:
        """NBIRTH (seq 0) and every DBIRTH, queued back to back, then ready."""
        client = self._client
        if client is None:
            return
        self.ready.clear()
        now = self._now_ms()
        self._seq = 0
        acks = [self._send(client, "NBIRTH", None, self.profile.nbirth(self.bdseq, now), now)]
        acks += [self._send(client, kind, dev, metrics, now)
                 for kind, dev, metrics in self.profile.births(now)]
        for code, reason in await asyncio.gather(*acks):
            if code >= 0x80:
                raise aiomqtt.MqttError(f"sparkplug birth refused: {reason} (0x{code:02x})")
        self._hist_until = self.outbox.last_committed_seq()
        self.ready.set()

    def numbered(self, kind: str, dev: str | None, metrics: list[sparkplug_pb.Metric],
                 now_ms: int) -> tuple[str, bytes]:
        """Topic and payload of the node's next message (seq 0..255, +1 each)."""
        seq = self._seq
        self._seq = (seq + 1) % 256
        return self.profile.topic(kind, dev), sparkplug_pb.encode(now_ms, metrics, seq)

    def _send(self, client: _SparkplugClient, kind: str, dev: str | None,
              metrics: list[sparkplug_pb.Metric], now_ms: int) -> Awaitable[tuple[int, str]]:
        return client.enqueue(*self.numbered(kind, dev, metrics, now_ms))

    async def rebirth(self) -> None:
        """A config apply changed the devices (or a host asked): NBIRTH and DBIRTHs again, same
        bdSeq, no new session."""
        if self.ready.is_set():
            self.rebirths += 1
            await self._birth()

    # -- delivery -------------------------------------------------------------------------------

    async def deliver(self, message: Message, hist: bool) -> tuple[int, str]:
        """What the row makes on the Sparkplug session, acknowledged (the worst PUBACK)."""
        while True:
            await self.ready.wait()
            client, lost = self._client, self._lost
            if client is None:
                continue
            now = self._now_ms()
            outs = self.profile.render(message, message.fields(), hist or (
                message.seq <= self._hist_until), now)
            acks = [asyncio.ensure_future(self._send(client, kind, dev, metrics, now))
                    for kind, dev, metrics in outs]
            if not acks:
                return 0, "Success"
            gone = asyncio.ensure_future(lost.wait())
            done = asyncio.gather(*acks)
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if done.done():
                self.published += len(acks)
                return max(done.result())
            done.cancel()  # the session ended before the PUBACK: the next one sends it again

    async def graceful_offline(self) -> None:
        """A clean stop publishes the NDEATH itself (a clean DISCONNECT discards the Will)."""
        self._stopping_cleanly = True
        self.ready.clear()  # nothing after the NDEATH: rows wait for the next session
        client = self._client
        if client is None:
            return
        payload = sparkplug_pb.encode(self._now_ms(), self.profile.ndeath(self.bdseq), None)
        try:
            await asyncio.wait_for(client.enqueue(self.profile.topic("NDEATH"), payload), 2)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("sparkplug: NDEATH not acknowledged on stop: %s", exc)

    # -- what hosts send ------------------------------------------------------------------------

    async def _on_message(self, client: _SparkplugClient, message: aiomqtt.Message,
                          tg: asyncio.TaskGroup, writes: asyncio.Semaphore) -> None:
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if topic.startswith(f"{NAMESPACE}/STATE/"):
            await self._on_state(payload)
            return
        try:
            _, metrics = sparkplug_pb.decode(payload)
        except (sparkplug_pb.DecodeError, UnicodeDecodeError) as exc:
            self.dropped += 1
            log.warning("sparkplug: unreadable command on %s ignored: %s", topic, exc)
            return
        if topic == self.profile.topic("NCMD"):
            if any(m.name == REBIRTH and m.value is True for m in metrics):
                log.info("sparkplug: rebirth requested")
                await self.rebirth()
            else:
                self.dropped += 1
                log.warning("sparkplug: NCMD without %s = true ignored", REBIRTH)
            return
        dev = topic.rsplit("/", 1)[-1]
        await writes.acquire()
        tg.create_task(self._write(dev, metrics, writes), name="sparkplug-dcmd")

    async def _write(self, dev: str, metrics: list[sparkplug_pb.Metric],
                     writes: asyncio.Semaphore) -> None:
        """DCMD -> point.write through the command layer (writable, min/max, audit); Sparkplug
        has no answer: the host sees the effect in the next DDATA."""
        from agent.runtime import control  # noqa: PLC0415

        try:
            if not self.config.writes:
                raise ValueError("writes are off (mqtt.sparkplug.writes: false)")
            if not any(d.id == dev for d in self.agent.config.devices):
                raise ValueError(f"no device {dev!r}")
            for name, value in self.profile.writes(dev, metrics):
                answer = await control.dispatch(self.agent, "point.write",
                                                {"dev": dev, "n": name, "v": value}, "sparkplug")
                if answer.get("status") != "succeeded":
                    self.dropped += 1
                    log.warning("sparkplug: DCMD %s/%s refused: %s", dev, name,
                                answer.get("error") or answer.get("status"))
        except ValueError as exc:
            self.dropped += 1
            log.warning("sparkplug: DCMD for %s refused: %s", dev, exc)
        finally:
            writes.release()

    async def _on_state(self, payload: bytes) -> None:
        """The primary host's STATE (JSON): online -> births; offline -> NDEATH, start over."""
        try:
            if len(payload) > MAX_STATE:
                raise ValueError(f"larger than {MAX_STATE} bytes")
            state = json.loads(payload)
            online, ts = state["online"], state["timestamp"]
            if not isinstance(online, bool) or not isinstance(ts, int):
                raise ValueError("online must be a boolean and timestamp an integer")
        except (ValueError, KeyError, TypeError) as exc:
            self.dropped += 1
            log.warning("sparkplug: unreadable STATE of the primary host ignored: %s", exc)
            return
        if ts < self._host_ts:
            return  # an older STATE than one already seen (§5: compare the timestamps)
        self._host_ts = ts
        if online and not self._host_online:
            self._host_online = True
            log.info("sparkplug: primary host %s online", self.config.primary_host)
            await self._birth()
        elif not online and self._host_online:
            self._host_online = False
            log.warning("sparkplug: primary host %s offline: NDEATH, reconnecting",
                        self.config.primary_host)
            await self.graceful_offline()
            raise aiomqtt.MqttError("primary host offline")
