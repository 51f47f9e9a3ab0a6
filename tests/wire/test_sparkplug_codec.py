"""The Sparkplug profile's hand-written protobuf codec on hostile input (what NCMD/DCMD bring),
and its configuration. The encoding itself is checked against pysparkplug, a decoder we did not
write, end to end in tests/interop/sparkplug/."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from agent.wire import sparkplug_pb as pb
from tests.integration.helpers import load, write_config


def test_a_command_decodes_by_name_and_alias() -> None:
    payload = pb.encode(1767225600000, [pb.Metric("Node Control/Rebirth", value=True),
                                        pb.Metric(alias=3, value=130.5),
                                        pb.Metric(alias=4, value=-2, datatype=pb.INT64)], None)
    ts, metrics = pb.decode(payload)
    assert ts == 1767225600000
    assert [(m.name, m.alias, m.value) for m in metrics] == [
        ("Node Control/Rebirth", None, True), (None, 3, 130.5), (None, 4, -2)]


@pytest.mark.parametrize(("payload", "said"), [
    (b"\x08" + b"\xff" * 11, "varint"),  # a varint that never ends
    (b"\x12\x05\x0a", "truncated"),  # a metric longer than what is left
    (b"\x0b", "wire type 3"),  # group encoding: never in Sparkplug
    (b"\x00\x01", "field number 0"),
    (b"\x12" + bytes([9]) + b"\x69" + struct.pack("<d", float("nan")), "finite"),
    (b"\x12\x04\x0a\x02\xff\xfe", "utf-8"),  # a name that is not UTF-8
    (b"\x12\x00" * (pb.MAX_METRICS + 1), "more than"),
    (b"\x00" * (pb.MAX_PAYLOAD + 1), "larger than"),
])
def test_malformed_commands_are_refused_with_a_reason(payload: bytes, said: str) -> None:
    with pytest.raises((pb.DecodeError, UnicodeDecodeError)) as caught:
        pb.decode(payload)
    assert said in str(caught.value)


def test_unknown_fields_are_skipped() -> None:
    # metadata (8, nested) and a float value (12) inside a metric, uuid (4) in the payload
    metric = b"\x0a\x01a" + b"\x42\x02\x08\x01" + b"\x65" + struct.pack("<f", 1.5)
    payload = b"\x08\x01" + b"\x12" + bytes([len(metric)]) + metric + b"\x22\x02id"
    _, [m] = pb.decode(payload)
    assert (m.name, m.value) == ("a", 1.5)


def test_sparkplug_config(tmp_path: Path) -> None:
    from agent.sdk.errors import ConfigError  # noqa: PLC0415

    ok = load(write_config(tmp_path, broker_port=1, modbus_port=1, devices=[], mqtt={
        "profiles": ["native", "sparkplug"], "sparkplug": {"group": "site-a"}}))
    assert ok.mqtt.sparkplug.group == "site-a" and ok.mqtt.sparkplug.node is None
    assert ok.mqtt.sparkplug.writes is False
    bad = write_config(tmp_path, broker_port=1, modbus_port=1, devices=[], mqtt={
        "profiles": ["native", "sparkplug"], "sparkplug": {"group": "a/b"}})
    with pytest.raises(ConfigError) as caught:
        load(bad)
    assert any("mqtt.sparkplug.group" in p for p in caught.value.problems), caught.value.problems


def test_a_config_apply_that_removes_a_device_gives_its_ddeath_before_the_births(
        tmp_path: Path) -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from agent.sim.modbus_building import DEMO_POINTS  # noqa: PLC0415
    from agent.wire.sparkplug import Sparkplug  # noqa: PLC0415

    def devices(*ids: str) -> list[dict]:
        return [{"id": d, "bus": "lan", "address": i + 1, "points": DEMO_POINTS[1]}
                for i, d in enumerate(ids)]

    before = load(write_config(tmp_path, broker_port=1, modbus_port=1,
                               devices=devices("vmc-a", "vmc-b")))
    agent = SimpleNamespace(config=before)
    profile = Sparkplug(agent)
    assert [(k, d) for k, d, _ in profile.births(0)] == [("DBIRTH", "vmc-a"), ("DBIRTH", "vmc-b")]
    agent.config = load(write_config(tmp_path, broker_port=1, modbus_port=1,
                                     devices=devices("vmc-a")))
    assert [(k, d) for k, d, _ in profile.births(1)] == [("DDEATH", "vmc-b"), ("DBIRTH", "vmc-a")]
    aliases = profile.aliases()
    assert sorted(aliases.values()) == list(range(1, len(DEMO_POINTS[1]) + 1))
