"""Wire profile `thingsboard` end to end: a real agent polling the simulated Modbus building,
through a real mosquitto, checked against ThingsBoard's published gateway MQTT API
(asyncapi/schemas/tb-gateway.json): devices connected, attributes from the inventory, telemetry
with the readings' own times in ms, RPC mapped onto our commands and answered. No ThingsBoard
server runs here (a Java service with its database); the format is the bar."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.broker import Mosquitto
from tests.commands.mqtt_backend import ROOT, agent_with_commands, backend
from tests.integration.helpers import load
from tests.integration.test_schemas import assert_valid
from tests.observer import Observer, observing
from tests.wire.helpers import VMC_LOW, two_devices_config

TB = "v1/gateway"


def tb_config(tmp_path: Path, broker: Mosquitto, modbus_port: int, *, writes: bool) -> Path:
    return two_devices_config(
        tmp_path, broker, modbus_port,
        mqtt={"profiles": ["native", "thingsboard"], "thingsboard": {"writes": writes}},
        rules=[VMC_LOW])


def on(observer: Observer, topic: str) -> list[dict[str, Any]]:
    return [m.body for m in observer.messages if m.topic == topic]


async def rpc(observer: Observer, peer: Any, device: str, rpc_id: int, method: str,
              params: dict[str, Any]) -> dict[str, Any]:
    request = {"device": device, "data": {"id": rpc_id, "method": method, "params": params}}
    assert_valid("tb-gateway.json", request, "/$defs/rpcRequest")
    await peer.client.publish(f"{TB}/rpc", json.dumps(request).encode(), qos=1)
    await observer.wait_for(lambda ms: any(m.topic == f"{TB}/rpc" and m.body.get("id") == rpc_id
                                           for m in ms))
    reply = next(b for b in on(observer, f"{TB}/rpc") if b.get("id") == rpc_id)
    assert_valid("tb-gateway.json", reply, "/$defs/rpcResponse")
    return reply


async def test_connect_attributes_telemetry_and_rpc(tmp_path: Path, broker: Mosquitto,
                                                    modbus_building: tuple) -> None:
    _, port = modbus_building
    config = load(tb_config(tmp_path, broker, port, writes=True))
    async with observing(broker.port, "#", client_id="tb-obs") as observer, \
            agent_with_commands(config):
        await observer.wait_for(lambda ms: len(on(observer, f"{TB}/telemetry")) >= 6)
        connects = on(observer, f"{TB}/connect")
        for body in connects:
            assert_valid("tb-gateway.json", body, "/$defs/connect")
        assert {c["device"] for c in connects} == {"gw-test/vmc-a", "gw-test/pump-1"}
        inventory = on(observer, f"{TB}/attributes")[0]
        assert_valid("tb-gateway.json", inventory, "/$defs/attributes")
        assert inventory["gw-test/vmc-a"]["points"]["exhaust_pressure"] == {
            "unit": "Pa", "writable": False}
        assert inventory["gw-test/vmc-a"]["config"] == config.digest
        # Telemetry: the i-th message of a device is the i-th native pack, at its own time in ms.
        for dev in ("vmc-a", "pump-1"):
            name = f"gw-test/{dev}"
            tb = [b[name] for b in on(observer, f"{TB}/telemetry") if name in b]
            native = on(observer, f"{ROOT}/dev/{dev}/tm")
            for rows, pack in zip(tb, native, strict=False):
                [row] = rows  # one poll, one reading time
                assert row["ts"] == round(pack["e"][0]["bt"] * 1000)
                assert row["values"] == {r["n"]: r.get("v", r.get("vb")) for r in pack["e"]}
        for body in on(observer, f"{TB}/telemetry"):
            assert_valid("tb-gateway.json", body, "/$defs/telemetry")
        await observer.wait_for(lambda ms: any(
            "active_alarms" in b.get("gw-test/vmc-a", {}) and b["gw-test/vmc-a"]["active_alarms"]
            for b in on(observer, f"{TB}/attributes")))
        states = [b["gw-test/pump-1"]["state"] for b in on(observer, f"{TB}/attributes")
                  if "state" in b.get("gw-test/pump-1", {})]
        assert states[-1] == "ok"

        async with backend(broker.port) as peer:
            read = await rpc(observer, peer, "gw-test/vmc-a", 1, "point.read",
                             {"n": "exhaust_pressure"})
            assert read["data"]["status"] == "succeeded" and read["data"]["result"]["u"] == "Pa"
            wrote = await rpc(observer, peer, "gw-test/vmc-a", 2, "point.write",
                              {"n": "pressure_setpoint", "v": 130})
            assert wrote["data"]["status"] == "succeeded", wrote
            refused = await rpc(observer, peer, "gw-test/vmc-a", 3, "agent.restart", {})
            assert refused["data"]["code"] == 403 and "not allowed" in refused["data"]["error"]
            bad = await rpc(observer, peer, "gw-test/vmc-a", 4, "point.read", {"n": "nope"})
            assert bad["data"]["status"] == "rejected", bad
            # Another gateway's device on the same bridged topic: not ours, no answer.
            other = {"device": "gw-other/vmc-a", "data": {"id": 5, "method": "point.read",
                                                          "params": {"n": "exhaust_pressure"}}}
            await peer.client.publish(f"{TB}/rpc", json.dumps(other).encode(), qos=1)
            await asyncio.sleep(0.5)
            assert not [b for b in on(observer, f"{TB}/rpc") if b.get("id") == 5 and "data"
                        in b and "status" in b["data"]]
        written = [m.body for m in observer.messages if m.topic == f"{ROOT}/evt"
                   and m.body.get("type") == "point.written"]
        assert [(w["n"], w["value"], w["by"]) for w in written] == [
            ("pressure_setpoint", 130, "thingsboard")]


async def test_without_writes_rpc_point_write_is_refused(tmp_path: Path, broker: Mosquitto,
                                                         modbus_building: tuple) -> None:
    _, port = modbus_building
    config = load(tb_config(tmp_path, broker, port, writes=False))
    async with observing(broker.port, "#", client_id="tb-obs") as observer, \
            agent_with_commands(config), backend(broker.port) as peer:
        await observer.wait_for(lambda ms: bool(on(observer, f"{TB}/telemetry")))
        refused = await rpc(observer, peer, "gw-test/vmc-a", 9, "point.write",
                            {"n": "pressure_setpoint", "v": 130})
        assert refused["data"]["code"] == 403, refused
        assert not [m for m in observer.messages if m.body.get("type") == "point.written"]
