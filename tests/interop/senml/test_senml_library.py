"""A SenML library we did not write (kpn-senml, PyPI) reads what a real agent publishes.

A real agent process talks to a real mosquitto, polling the simulated Modbus building; one
point sits on a register the device refuses (exception 02), one device is unplugged. An MQTT 5
subscriber keeps every message with its content type and payload format indicator; the agent
is then killed with SIGKILL so the broker publishes its Last Will. For `encoding: json` and
`encoding: cbor`:

- every message says its encoding (MQTT 5 content type, payload format indicator) and decodes
  with it, the Last Will and `state` included (issue #15 item 11); a command answer is JSON
  (like the request) and says so in a CBOR gateway too;
- kpn-senml parses the `e` member of every telemetry message as a SenML pack (SenML+JSON or
  SenML+CBOR with the RFC 8428 integer labels) and gets our names and values; it can serialise
  every record it read again, which it refuses for a record without a value (RFC 8428 §4.2,
  item 9); the refused point is listed in `bad`, never as a record;
- the Last Will says it is one (`will: true`) and its `ts` is the connection time (item 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
import pytest
import yaml
from kpn_senml import SenmlPack, SenmlRecord

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from tests.broker import Mosquitto
from tests.faults.harness import ROOT, AgentProcess, config

REPO = Path(__file__).resolve().parents[3]
REFUSED = {"name": "spare_input", "register": "input:900", "type": "uint16"}
CONTENT_TYPE = {"json": "application/json", "cbor": "application/cbor"}
VALUE_LABELS = {"v", "vs", "vb", "vd", "s", 2, 3, 4, 8, 5}


@dataclass
class Capture:
    """An MQTT 5 subscriber that keeps what the broker delivered, properties included."""

    port: int
    messages: list[tuple[str, bytes, Any, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    client: aiomqtt.Client | None = None

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="senml-interop",
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(f"{ROOT}/#", qos=1)
            self.client = client
            self.subscribed.set()
            async for message in client.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                self.messages.append((str(message.topic), payload, message.properties,
                                      bool(message.retain)))
                self.changed.set()

    def on(self, suffix: str) -> list[tuple[str, bytes, Any, bool]]:
        return [m for m in self.messages if m[0] == ROOT + suffix]

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def capturing(port: int) -> AsyncIterator[Capture]:
    capture = Capture(port)
    task = asyncio.ensure_future(capture.run())
    await asyncio.wait_for(capture.subscribed.wait(), 10)
    try:
        yield capture
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def declared_content_types() -> dict[str, str]:
    """Channel address below the root -> the content type the AsyncAPI document declares."""
    doc = yaml.safe_load((REPO / "asyncapi" / "asyncapi.yaml").read_text())
    out = {}
    for channel in doc["channels"].values():
        address = channel["address"].removeprefix("{namespace}/{site}/{gw}/")
        for ref in channel["messages"].values():
            message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
            out[address] = message.get("contentType", doc["defaultContentType"])
    return out


def decode(payload: bytes, encoding: str) -> Any:
    return json.loads(payload) if encoding == "json" else cbor2.loads(payload)


def kpn_read(pack: list[Any], encoding: str) -> list[SenmlRecord]:
    """kpn-senml's reading of one pack, from the bytes of that pack in the message's encoding.

    The library hands each record it parsed to the pack's callback (its API for incoming data;
    its pack iterator is broken in 1.0.1), with the child pack its base name opened.
    """
    seen: list[tuple[SenmlPack | None, SenmlRecord]] = []
    parsed = SenmlPack("", callback=lambda record, device=None: seen.append((device, record)))
    if encoding == "json":
        parsed.from_json(json.dumps(pack))
    else:
        parsed.from_cbor(cbor2.dumps(pack))
    devices = {device.name for device, _ in seen if device is not None}
    assert devices == {pack[0]["bn" if encoding == "json" else -2]}, devices
    # kpn-senml serialises a record only when it has a value (or a sum): none may fail.
    json.loads(parsed.to_json())
    cbor2.loads(parsed.to_cbor())
    return [record for _, record in seen]


@pytest.mark.parametrize("encoding", ["json", "cbor"])
async def test_every_message_in_both_encodings(encoding: str, tmp_path: Path, broker: Mosquitto,
                                               modbus_building: tuple[ModbusBuilding, int]
                                               ) -> None:
    building, modbus_port = modbus_building
    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms", "timeout": "300ms",
                "points": [*DEMO_POINTS[1], REFUSED]},
               {"id": "pump-1", "bus": "lan", "address": 2, "poll": "300ms", "timeout": "200ms",
                "points": DEMO_POINTS[2]}]
    path = config(tmp_path, broker, modbus_port, devices=devices,
                  mqtt={"encoding": encoding, "keepalive": "5s"}, health={"interval": "500ms"})
    building.set_silent(2)
    agent = AgentProcess(path, tmp_path / "agent.log")
    async with capturing(broker.port) as capture:
        await agent.start()
        try:
            await capture.wait_for(lambda c: len(c.on("/dev/vmc-a/tm")) >= 2
                                   and c.on("/health") and c.on("/dev/pump-1/state")
                                   and c.on("/evt") and c.on("/birth"))
        except TimeoutError:
            pytest.fail(f"agent did not publish: {(tmp_path / 'agent.log').read_text()[-3000:]}")
        assert capture.client is not None  # a command: answers stay JSON, labelled so
        await capture.client.publish(f"{ROOT}/cmd/req", json.dumps(
            {"id": "ping-1", "op": "ping", "args": {}, "exp": int(time.time()) + 60}), qos=1)
        await capture.wait_for(lambda c: c.on("/cmd/res"))
        await agent.kill()  # no DISCONNECT: the broker publishes the Last Will
        await capture.wait_for(lambda c: any(not decode(m[1], encoding)["online"]
                                             for m in c.on("/state")))

    declared = declared_content_types()
    kinds: set[str] = set()
    for topic, payload, props, _retained in capture.messages:
        suffix = topic.removeprefix(ROOT + "/")
        kind = "dev/{dev}/" + suffix.rsplit("/", 1)[-1] if suffix.startswith("dev/") else suffix
        kinds.add(kind)
        if kind == "cmd/req":
            continue  # our own request
        own = "json" if kind == "cmd/res" else encoding  # answers are JSON, like the requests
        assert props.ContentType == CONTENT_TYPE[own], topic
        assert props.PayloadFormatIndicator == (1 if own == "json" else 0), topic
        if encoding == "json":  # the AsyncAPI document says what a JSON gateway sends
            assert declared[kind] == props.ContentType, (kind, declared[kind])
        decode(payload, own)  # every payload is in the encoding it says
    assert kinds >= {"state", "birth", "health", "evt", "dev/{dev}/state", "dev/{dev}/tm",
                     "cmd/res"}, kinds

    online, will = (decode(m[1], encoding) for m in capture.on("/state"))
    assert online["online"] is True and "will" not in online
    assert will["online"] is False and will["will"] is True and will["sess"] == online["sess"]
    assert will["ts"] <= online["ts"]  # registered at CONNECT: the connection time
    # The retained device states belong to the session the Will closed: a backend following the
    # documented rule shows them as unknown.
    device_states = [decode(m[1], encoding) for m in capture.messages
                     if "/dev/" in m[0] and m[0].endswith("/state")]
    assert device_states and all(d["sess"] == will["sess"] for d in device_states)

    read = 0
    for _, payload, _, _ in capture.on("/dev/vmc-a/tm"):
        body = decode(payload, encoding)
        pack = body["e"]
        assert body["bad"] == [{"n": "spare_input"}]
        ours = {}
        for record in pack:
            assert len(VALUE_LABELS & set(record)) == 1, record  # RFC 8428 §4.2
            name = record["n" if encoding == "json" else 0]
            ours[name] = next(record[k] for k in VALUE_LABELS if k in record)
        theirs = {r.name: r.value for r in kpn_read(pack, encoding)}
        assert theirs == ours and "spare_input" not in theirs
        assert {"exhaust_pressure", "fan_running", "fan_speed"} <= set(theirs)
        read += 1
    assert read >= 2
