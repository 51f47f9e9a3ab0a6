"""The baseline of `bench_agent`: a naive gateway, run as its own process in the same run.

What a first version of a gateway does, with the same libraries (pymodbus, sqlite3, aiomqtt) and
the same building: every period, one Modbus request per point; each reading is stored with its own
commit (store-and-forward done the simple way), then published as its own QoS 1 message and
deleted. It reads the same gateway.yaml as the agent (buses[0], devices), publishes SenML records
on the same topics, so the benchmark counts both alike. Not a product: no rules, no backoff."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import struct
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from pymodbus.client import AsyncModbusTcpClient

WORDS = {"int16": 1, "uint16": 1, "bool": 1, "int32": 2, "uint32": 2, "float32": 2}


def _value(kind: str, words: list[Any]) -> float:
    if kind == "bool" or isinstance(words[0], bool):
        return float(bool(words[0]))
    if len(words) == 2:
        return float(struct.unpack(">I", struct.pack(">2H", *words))[0])
    return float(words[0])


async def main(config_path: str) -> None:
    doc = yaml.safe_load(Path(config_path).read_text())
    bus, root = doc["buses"][0], f"bgw/v1/{doc['gateway']['site']}/{doc['gateway']['id']}"
    db = sqlite3.connect(Path(doc["buffer"]["path"]).with_name("naive.db"))
    db.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, topic TEXT, body TEXT)")
    modbus = AsyncModbusTcpClient(bus["host"], port=bus["port"])
    await modbus.connect()
    calls = {"coils": modbus.read_coils, "discrete": modbus.read_discrete_inputs,
             "input": modbus.read_input_registers, "holding": modbus.read_holding_registers}
    async with aiomqtt.Client(doc["mqtt"]["host"], doc["mqtt"]["port"]) as mqtt:
        devices = doc["devices"]
        period = float(devices[0]["poll"].removesuffix("ms")) / 1000 if devices[0]["poll"].endswith(
            "ms") else float(devices[0]["poll"].removesuffix("s"))
        next_due = time.monotonic()
        while True:
            for device in devices:
                for point in device["points"]:
                    table, _, address = point["register"].partition(":")
                    answer = await calls[table](int(address), count=WORDS[point["type"]],
                                                device_id=device["address"])
                    words = answer.bits if table in ("coils", "discrete") else answer.registers
                    body = json.dumps({"e": [{"bn": device["id"], "n": point["name"],
                                              "v": _value(point["type"], words),
                                              "t": time.time()}]})
                    topic = f"{root}/dev/{device['id']}/tm"
                    cursor = db.execute("INSERT INTO q (topic, body) VALUES (?, ?)", (topic, body))
                    db.commit()
                    await mqtt.publish(topic, body, qos=1)
                    db.execute("DELETE FROM q WHERE id = ?", (cursor.lastrowid,))
                    db.commit()
            next_due += period
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
