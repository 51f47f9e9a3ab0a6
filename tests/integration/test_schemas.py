"""The AsyncAPI document and its JSON Schemas against what a running agent really publishes."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from agent.runtime import health

from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.commands.schema import request_schema
from agent.store.outbox import parse_watermark
from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from tests.broker import Mosquitto
from tests.commands.mqtt_backend import ROOT, agent_with_commands, backend
from tests.integration.helpers import load, write_config
from tests.observer import observing as observe

API = Path(__file__).resolve().parents[2] / "asyncapi"
SCHEMAS = API / "schemas"


def registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry())


def assert_valid(name: str, body: Any, fragment: str = "") -> None:
    """`fragment`: a JSON pointer into the schema (`/$defs/telemetry`) for files of defs."""
    check = validator(name) if not fragment else jsonschema.Draft202012Validator(
        {"$ref": f"{json.loads((SCHEMAS / name).read_text())['$id']}#{fragment}"},
        registry=registry())
    errors = sorted(check.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{name}: {[f'{list(e.path)}: {e.message}' for e in errors[:5]]}\n{body}"


def test_every_schema_is_a_valid_2020_12_schema() -> None:
    names = sorted(p.name for p in SCHEMAS.glob("*.json"))
    assert {"state.json", "birth.json", "dev-state.json", "tm.json", "idx.json", "evt.json",
            "alarms.json",
            "health.json", "cmd-req.json", "cmd-res.json", "ack.json"} <= set(names)
    for name in names:
        jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMAS / name).read_text()))


def test_the_request_schema_is_the_one_the_code_generates() -> None:
    published = json.loads((SCHEMAS / "cmd-req.json").read_text())
    assert published == request_schema(), (
        "asyncapi/schemas/cmd-req.json is stale: python -m agent.commands.schema > "
        "asyncapi/schemas/cmd-req.json")


def test_the_asyncapi_document_covers_every_topic_and_resolves() -> None:
    doc = yaml.safe_load((API / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"].removeprefix("{namespace}/{site}/{gw}/")
                 for c in doc["channels"].values()}
    assert addresses == {"state", "birth", "dev/{dev}/state", "dev/{dev}/tm", "dev/{dev}/idx",
                         "evt", "alarms",
                         "health", "cmd/req", "cmd/res", "ack",
                         # wire profile homeassistant (agent/wire/homeassistant.py)
                         "{discovery_prefix}/device/{object_id}/config", "ha/{dev}", "ha/{dev}/hist",
                         "{discovery_prefix}/{component}/{node_id}/{object_id}/config",
                         "ha/{dev}/availability", "ha/_alarms", "ha/{dev}/{point}/set",
                         # wire profile thingsboard (agent/wire/thingsboard.py)
                         "v1/gateway/connect", "v1/gateway/disconnect", "v1/gateway/attributes",
                         "v1/gateway/telemetry", "v1/gateway/rpc",
                         # wire profile sparkplug (agent/wire/sparkplug.py, protobuf payloads)
                         "spBv1.0/{group}/NBIRTH/{node}", "spBv1.0/{group}/NDEATH/{node}",
                         "spBv1.0/{group}/NCMD/{node}", "spBv1.0/{group}/DBIRTH/{node}/{dev}",
                         "spBv1.0/{group}/DDATA/{node}/{dev}",
                         "spBv1.0/{group}/DDEATH/{node}/{dev}",
                         "spBv1.0/{group}/DCMD/{node}/{dev}", "spBv1.0/STATE/{host}"}
    for channel in doc["channels"].values():
        params = set(re.findall(r"{(\w+)}", channel["address"]))
        assert params == set(channel.get("parameters", {})), channel["address"]
        for message in channel["messages"].values():
            name = message["$ref"].rsplit("/", 1)[-1]
            schema = doc["components"]["messages"][name]["payload"]["schema"]
            if "$ref" not in schema:
                continue  # a plain-text payload described inline (online/offline, ON/OFF)
            payload, _, fragment = schema["$ref"].partition("#")
            assert (API / payload).is_file(), payload
            for example in doc["components"]["messages"][name].get("examples", []):
                if "sig" not in example["payload"]:
                    assert_valid(Path(payload).name, example["payload"], fragment)
    for operation in doc["operations"].values():
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
    reply = doc["operations"]["handleCommand"]["reply"]
    assert reply["channel"]["$ref"] == "#/channels/commandResponses"
    assert doc["operations"]["receiveAck"]["action"] == "receive"
    examples = doc["components"]["messages"]["event"]["examples"]
    assert {e["payload"]["type"] for e in examples} >= {
        "buffer.overflow", "buffer.fault", "buffer.restored", "clock.jump", "alarm.suppressed",
        "cert.expiring", "point.written", "config.confirmed", "config.rolled_back"}
    assert doc["components"]["messages"]["ack"]["examples"]


def test_every_payload_declares_json_schema_2020_12() -> None:
    # Issue #15: without schemaFormat, AsyncAPI tools read the schemas as draft-07 and ignore
    # prefixItems, unevaluatedProperties, dependentRequired.
    doc = yaml.safe_load((API / "asyncapi.yaml").read_text())
    for name, message in doc["components"]["messages"].items():
        payload = message["payload"]
        assert payload.get("schemaFormat") == "application/schema+json;version=2020-12", name
        if "$ref" not in payload["schema"]:
            continue  # an inline plain-text payload (online/offline, ON/OFF): no keyword at stake
        path, _, _fragment = payload["schema"]["$ref"].partition("#")
        schema = json.loads((API / path).read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name


def _channel_pattern(address: str, parameters: dict[str, Any]) -> re.Pattern[str]:
    """A topic regex for a channel as a backend builds it from the document: a parameter with
    an enum is one of those values, any other is one topic level of [a-z0-9-]."""
    def one(match: re.Match[str]) -> str:
        values = parameters[match.group(1)].get("enum")
        if values:
            return "(?:" + "|".join(re.escape(v) for v in values) + ")"
        return "[a-z0-9-]+" if match.group(1) != "namespace" else ".+"
    return re.compile("^" + re.sub(r"{(\w+)}", one, address) + "$")


def test_no_topic_matches_two_channels() -> None:
    # Issue #15: `{namespace}` may contain `/`; captured freely it lets `.../dev/x/state`
    # match the gateway's `state` channel too.
    doc = yaml.safe_load((API / "asyncapi.yaml").read_text())
    params = doc["components"]["parameters"]

    def resolved(channel: dict[str, Any]) -> dict[str, Any]:
        return {name: params[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
                for name, p in channel.get("parameters", {}).items()}

    patterns = {name: _channel_pattern(channel["address"], resolved(channel))
                for name, channel in doc["channels"].items()}
    for dev in ("x", "state", "dev", "tm", "alarms", "hist"):
        for name, channel in doc["channels"].items():
            topic = (channel["address"].replace("{namespace}", "bgw/v1")
                     .replace("{site}", "site-a").replace("{gw}", "gw-1").replace("{dev}", dev)
                     .replace("{point}", "setpoint").replace("{discovery_prefix}", "homeassistant")
                     .replace("{object_id}", "gw-1-vmc").replace("{component}", "sensor")
                     .replace("{node_id}", "gw-1-vmc").replace("{group}", "site-a")
                     .replace("{node}", "gw-1").replace("{host}", "scada-1"))
            matching = [other for other, pattern in patterns.items() if pattern.match(topic)]
            assert matching == [name], (topic, matching)


def test_a_real_overflow_event_and_the_backend_watermark_match_their_schemas(
        tmp_path: Path) -> None:
    config = load(write_config(tmp_path, broker_port=1883, modbus_port=502,
                               devices=[{"id": "vmc-a", "bus": "lan", "address": 1,
                                         "points": DEMO_POINTS[1]}]))
    agent = supervisor.Agent(config, SystemClock())
    try:
        agent._overflow(3, 7, 5, "max_age")  # noqa: SLF001
        [message] = [m for m in agent.outbox.peek(10) if m.topic == "evt"]
        body = json.loads(agent.uplink.payload(message))
    finally:
        agent.outbox.close()
    assert body["type"] == "buffer.overflow" and body["reason"] == "max_age"
    assert_valid("evt.json", body)
    for bad in ({**body, "reason": "full"}, {k: v for k, v in body.items() if k != "reason"},
                {**body, "type": "buffer.overfull"}):
        assert list(validator("evt.json").iter_errors(bad)), bad
    assert_valid("ack.json", {"seq": 5})
    # The schema and the gateway's parser agree (5.0 aside: JSON Schema calls it an integer).
    for ack in ({"seq": 5}, {"seq": 0}, {"seq": -1}, {"seq": True}, {"seq": "5"}, {}, [5],
                {"seq": 5, "note": "ignored"}):
        accepted = parse_watermark(json.dumps(ack).encode()) is not None
        assert accepted == (not list(validator("ack.json").iter_errors(ack))), ack


def test_the_request_schema_accepts_what_the_handler_accepts() -> None:
    good = {"id": "a-1", "op": "point.write", "args": {"dev": "vmc-a", "n": "x", "v": 1.5},
            "exp": 1767225860, "aud": "gw-test", "by": "ops"}
    assert_valid("cmd-req.json", good)
    for bad in ({**good, "args": {"dev": "vmc-a", "n": "x"}}, {**good, "op": "teleport"},
                {**good, "extra": 1}, {k: v for k, v in good.items() if k != "exp"},
                {**good, "args": {"dev": "vmc-a", "n": "x", "v": "on"}}):
        assert list(validator("cmd-req.json").iter_errors(bad)), bad


@pytest.fixture
def building(modbus_building: tuple[ModbusBuilding, int]) -> tuple[ModbusBuilding, int]:
    return modbus_building


def observing(port: int) -> Any:
    return observe(port, f"{ROOT}/#", client_id=f"schema-{uuid.uuid4().hex[:6]}")


def req(op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "op": op, "args": args or {}, "exp": int(time.time() + 60),
            "by": "schema-test"}


SCHEMA_OF = [("/state", "state.json"), ("/birth", "birth.json"), ("/tm", "tm.json"),
             ("/evt", "evt.json"), ("/alarms", "alarms.json"), ("/health", "health.json"),
             ("/cmd/res", "cmd-res.json")]


async def test_real_messages_and_answers_match_their_schemas(tmp_path: Path, broker: Mosquitto,
                                                             building: tuple) -> None:
    sim, modbus_port = building
    devices = [{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms", "timeout": "200ms",
                "points": DEMO_POINTS[1]},
               {"id": "pump-1", "bus": "lan", "address": 2, "poll": "300ms", "timeout": "200ms",
                "points": DEMO_POINTS[2]}]
    config = load(write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                               devices=devices, health={"interval": "300ms"},
                               commands={"unsigned": "allow"}))  # a lab: anonymous writes
    async with observing(broker.port) as observer, \
            agent_with_commands(config) as (agent, _), backend(broker.port, v5=False) as peer:
        requests = [req("ping"), req("point.read", {"dev": "vmc-a", "n": "exhaust_pressure"}),
                    req("point.write", {"dev": "vmc-a", "n": "fan_enable", "v": True}),
                    req("point.write", {"dev": "vmc-a", "n": "fan_speed", "v": 1}),
                    req("maintenance.set", {"dev": "pump-1", "until": time.time() + 600}),
                    req("config.get"), req("buffer.stats"), req("buffer.resend",
                                                              {"from_seq": 1, "to_seq": 2}),
                    req("health"), req("log.get", {"lines": 3}), req("rebirth"),
                    req("teleport"), {"id": "late", "op": "ping", "exp": 1}]
        for body in requests:
            assert_valid("cmd-req.json", body) if body["op"] != "teleport" else None
            await peer.ask(body)
        await peer.send(b'{"op": "ping"}')  # no id: answered with id null
        await peer.wait_for(None)
        sim.set_silent(2, True)
        await observer.wait_for(lambda ms: any(m.topic.endswith("/evt") and
                                               m.body["type"] == "device.down" for m in ms))
        await observer.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/health")])
                                >= 2)
        full = health.report(agent)
    seen: dict[str, int] = {}
    for message in observer.messages:
        suffix = message.topic.removeprefix(ROOT)
        name = "dev-state.json" if re.fullmatch(r"/dev/[^/]+/state", suffix) else next(
            (schema for end, schema in SCHEMA_OF if suffix.endswith(end)), None)
        if suffix == "/cmd/req":
            continue
        assert name is not None, message.topic
        assert_valid(name, message.body)
        seen[name] = seen.get(name, 0) + 1
    assert {"state.json", "birth.json", "dev-state.json", "tm.json", "evt.json", "health.json",
            "cmd-res.json"} <= set(seen), seen
    for _, answer, _ in peer.answers:
        assert_valid("cmd-res.json", answer)
    strict = json.loads((SCHEMAS / "health.json").read_text())
    strict["required"] = sorted(set(strict["required"]) | {
        "cpu", "memory", "disk", "outbox_depth", "outbox_oldest_age", "cert_days",
        "clock_synced"})
    jsonschema.Draft202012Validator(strict, registry=registry()).validate(full)
    assert full["buses"]["lan"]["requests"] > 0
