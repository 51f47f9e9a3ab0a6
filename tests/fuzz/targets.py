"""What the fuzz loop feeds: one `Target` per decoder of outside input, each with real seeds that
mutations start from and the exceptions that count as a clean refusal. Anything else raised, or a
single input slower than SLOW_INPUT, is a finding.

Adding a decoder is a builder and one line in `targets()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.config import loader as config_mod
from agent.sdk.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    run: Callable[[bytes], Any]
    refusals: tuple[type[BaseException], ...]
    close: Callable[[], None] = field(default=lambda: None)


# -- M-Bus ----------------------------------------------------------------------------------------

def mbus_target() -> Target:
    from drivers.mbus import codec, frames  # noqa: PLC0415

    seeds = []
    for folder in ("test-frames", "error-frames"):
        for path in sorted((SHARED / "mbus-libmbus" / folder).glob("*.hex")):
            try:
                seeds.append(bytes.fromhex("".join(path.read_text().split())))
            except ValueError:
                continue
    seeds = seeds or [frames.rsp_ud(1, 0x72, bytes(12))]

    def run(data: bytes) -> None:
        frames.extract_frame(data)  # the line's framer: must never raise
        try:
            codec.decode_frame(data)
        finally:
            # Most mutations break the frame's checksum: feed the same bytes to the record
            # decoder behind it too (as CI + user data of a long frame), so it is reached.
            if len(data) > 7:
                codec.decode_user_data(data[6], data[7:-2], address=data[5])

    return Target("mbus", seeds, run, (frames.MBusDecodeError,))


# -- Modbus ---------------------------------------------------------------------------------------

def modbus_target() -> Target:
    from drivers.modbus import codec  # noqa: PLC0415
    from drivers.modbus.config import ModbusPointConfig  # noqa: PLC0415

    kinds = [("holding:0", t) for t in ("int16", "uint16", "int32", "uint32", "float32")]
    points = [ModbusPointConfig.model_validate(
        {"name": "p", "register": reg, "type": kind, "scale": scale, "offset": offset,
         "not_available": None if kind == "float32" else na,
         **({"word_order": order} if kind.endswith("32") else {})})
        for reg, kind in kinds for order in ("big", "little")
        for scale, offset, na in ((1.0, 0.0, None), (0.1, -40.0, 65535), (1e-300, 1e300, None))]
    points.append(ModbusPointConfig.model_validate(
        {"name": "b", "register": "holding:0", "type": "bool", "bit": 3}))

    def run(data: bytes) -> None:
        if not data:
            return
        point = points[data[0] % len(points)]
        words = [int.from_bytes(data[i:i + 2], "big") for i in range(1, len(data) - 1, 2)]
        codec.decode(point, words)

    seeds = [bytes([i]) + bytes.fromhex("41c80000") for i in range(len(points))]
    return Target("modbus", seeds, run, (codec.DecodeError,))


# -- YAML config loader ---------------------------------------------------------------------------

def yaml_target() -> Target:
    doc = {"gateway": {"id": "gw-1", "site": "s-1"},
           "mqtt": {"host": "127.0.0.1", "port": 1883, "tls": False},
           "buffer": {"path": "/tmp/fuzz-outbox.db"},
           "buses": [{"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1", "port": 502}],
           "devices": [{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "30s",
                        "points": [{"name": "p", "register": "holding:0", "type": "int16",
                                    "scale": 0.1, "unit": "Pa"}]}],
           "rules": [{"id": "r-1", "type": "threshold", "point": "vmc-a/p", "below": 5,
                      "for": "1m", "severity": "major"}]}
    seeds = [yaml.safe_dump(doc, sort_keys=False).encode(), json.dumps(doc).encode(),
             b"a: &x [1, 2]\nb: [*x, *x]\n", b"- [[[{a: 1}]]]\n", b"gateway: !!binary aGk=\n"]

    def run(data: bytes) -> None:
        config_mod.parse(data.decode("utf-8", errors="replace"), "fuzz.yaml")

    return Target("yaml", seeds, run, (ConfigError,))


# -- the command handler --------------------------------------------------------------------------

def command_target() -> Target:
    """Whole requests through the handler (decode, shape, size, auth, validation), on a real agent
    object whose outbox lives in a temporary directory; only read-only operations are seeded."""
    from agent.runtime import supervisor  # noqa: PLC0415
    from agent.sdk.clock import SystemClock  # noqa: PLC0415

    workdir = Path(tempfile.mkdtemp(prefix="batigate-fuzz-"))
    text = yaml_target().seeds[0].decode().replace("/tmp/fuzz-outbox.db",
                                                   str(workdir / "outbox.db"))
    (workdir / "gateway.yaml").write_text(text)
    agent = supervisor.Agent(config_mod.load(workdir / "gateway.yaml"), SystemClock())
    loop = asyncio.new_event_loop()
    logging.getLogger("agent.commands").setLevel(logging.CRITICAL)
    ops = [("ping", {}), ("buffer.stats", {}), ("point.read", {"dev": "vmc-a", "n": "p"}),
           ("config.apply", {"config": "gateway: [unclosed"}), ("nope", {"x": [1, {"y": None}]})]
    seeds = [json.dumps({"id": f"fuzz-{i}", "op": op, "args": args, "exp": 4102444800}).encode()
             for i, (op, args) in enumerate(ops)]

    def run(data: bytes) -> None:
        answer = loop.run_until_complete(asyncio.wait_for(agent.commands(data), 5))
        if answer is not None and answer.get("code") == 500:
            raise AssertionError(f"internal error answered: {answer}")

    def close() -> None:
        loop.close()
        agent.outbox.close()

    return Target("commands", seeds, run, (), close)


# -- wireless M-Bus ------------------------------------------------------------------------------

def wmbus_target() -> Target:
    """The radio telegram decoder, seeded with the real telegrams of the conformance file (with
    their keys, so mutations reach the decrypted application layer too)."""
    from drivers.wmbus.errors import TelegramError  # noqa: PLC0415
    from drivers.wmbus.keys import KeyStore  # noqa: PLC0415
    from drivers.wmbus.telegram import decode_telegram  # noqa: PLC0415

    vectors = [json.loads(line) for line in
               (SHARED / "wmbus-wmbusmeters" / "telegrams.jsonl").read_text().splitlines()
               if line.strip()]
    keys = KeyStore()
    for vector in vectors:
        if vector["key"]:
            keys.add(vector["id"], bytes.fromhex(vector["key"]))
    seeds = [bytes.fromhex(v["telegram"][:len(v["telegram"]) // 2 * 2]) for v in vectors]  # one
    # vector has a stray last nibble

    def run(data: bytes) -> Any:
        return decode_telegram(data, keys, frame_format="stripped")
    return Target("wmbus", seeds, run, (TelegramError,))


def targets() -> Iterator[Callable[[], Target]]:
    """Builders, so a run can pick some without paying for the others' setup."""
    yield command_target
    yield yaml_target
    yield mbus_target
    yield modbus_target
    yield wmbus_target
