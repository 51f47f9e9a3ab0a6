"""Wire profile `sparkplug` against a Sparkplug B host we did not write: PyPI pysparkplug (Google's
protobuf runtime, its own generated sparkplug_b_pb2) in a venv of its own (it needs paho-mqtt<2),
run as a subprocess (host.py) subscribed to spBv1.0/# on a real mosquitto, while a real agent
polls the simulated Modbus building. What it decodes is the bar: NBIRTH/DBIRTH/DDATA/NDEATH, the
DDATA values equal to the native telemetry of the same reading, a broker outage (the backlog in
order, is_historical), a SIGKILL (NDEATH from the Will with the NBIRTH's bdSeq), a rebirth asked
by NCMD, DCMD writes (only with `writes: true`) and the primary host's STATE, all encoded by
pysparkplug."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Mosquitto
from tests.faults.harness import ROOT, AgentProcess, config, persistent_broker
from tests.observer import Observer, observing

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PYTHON = REPO / "build" / "interop" / "pysparkplug" / "bin" / "python"
NODE = "spBv1.0/site/{kind}/gw-test"


@pytest.fixture(scope="module")
def pysparkplug() -> Path:
    done = subprocess.run(["bash", str(HERE / "install-pysparkplug.sh")], capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"install-pysparkplug.sh failed (no independent decoder):\n"
                    f"{done.stderr[-3000:]}")
    return PYTHON


class Host:
    """The pysparkplug subprocess: decoded messages in `seen`, commands through `send`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []  # first copies: payloads carry seq and times
        self.keys: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()
        self.changed = asyncio.Event()

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            item = json.loads(line)
            if item.get("subscribed"):
                self.subscribed.set()
            elif "error" in item:  # pysparkplug could not decode it: the test fails on it
                self.errors.append(item)
            elif "topic" in item:
                key = json.dumps(item, sort_keys=True)
                if key in self.keys:  # a QoS 1 copy (the host's session across the restart)
                    continue
                self.keys.add(key)
                self.seen.append(item)
                self.changed.set()

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    def of(self, kind: str, dev: str | None = None) -> list[dict[str, Any]]:
        topic = NODE.format(kind=kind) + (f"/{dev}" if dev else "")
        return [m for m in self.seen if m["topic"] == topic]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.seen if m["type"] == kind]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def host(python: Path, port: int, client_id: str = "pysparkplug-host"
               ) -> AsyncIterator[Host]:
    proc = await asyncio.create_subprocess_exec(
        str(python), str(HERE / "host.py"), str(port), client_id, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    peer = Host(proc)
    reader = asyncio.ensure_future(peer.read())
    try:
        await asyncio.wait_for(peer.subscribed.wait(), 15)
        yield peer
        assert not reader.done(), reader  # the reader ended early: a line was not JSON
        assert peer.errors == []
    finally:
        proc.kill()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await asyncio.wait_for(proc.wait(), 10)


def values(ddata: dict[str, Any]) -> dict[str, Any]:
    return {m["name"]: m["value"] for m in ddata["metrics"]}


def native_values(pack: dict[str, Any]) -> dict[str, Any]:
    return {r["n"]: r.get("v", r.get("vb", r.get("vs"))) for r in pack["e"]
            if any(k in r for k in ("v", "vb", "vs"))}


def sp_config(tmp_path: Path, broker: Mosquitto, modbus_port: int, **sparkplug: Any) -> Path:
    return config(tmp_path, broker, modbus_port,
                  mqtt={"profiles": ["native", "sparkplug"],
                        "sparkplug": {"group": "site", **sparkplug}},
                  buffer={"backlog_rate": 100, "backlog_burst": 20})


def by_time(observer: Observer, dev: str) -> dict[int, dict[str, Any]]:
    """Native packs of a device by reading time (ms): what each DDATA must equal."""
    return {round(m.body["e"][0]["bt"] * 1000): m.body for m in observer.messages
            if m.topic == f"{ROOT}/dev/{dev}/tm"}


@pytest.mark.timeout(150)
async def test_births_data_outage_rebirth_writes_and_sigkill(
        tmp_path: Path, modbus_building: tuple, pysparkplug: Path) -> None:
    _, modbus_port = modbus_building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    agent = AgentProcess(sp_config(tmp_path, broker, modbus_port, writes=True),
                         tmp_path / "agent.log")
    try:
        async with host(pysparkplug, broker.port) as scada, \
                observing(broker.port, f"{ROOT}/#", client_id="sp-native") as observer:
            await agent.start()
            await scada.wait_for(lambda: all(len(scada.of("DDATA", d)) >= 3
                                             for d in ("vmc-a", "pump-1")))
            [nbirth] = scada.of("NBIRTH")
            birth = {m["name"]: m for m in nbirth["metrics"]}
            assert nbirth["seq"] == 0 and birth["bdSeq"]["datatype"] == "INT64"
            assert birth["Node Control/Rebirth"] == {**birth["Node Control/Rebirth"],
                                                     "value": False, "datatype": "BOOLEAN"}
            bdseq = birth["bdSeq"]["value"]
            dbirth = {m["name"]: m for m in scada.of("DBIRTH", "pump-1")[0]["metrics"]}
            assert dbirth["pump1_running"]["datatype"] == "BOOLEAN"
            assert dbirth["water_level"]["datatype"] == "DOUBLE"
            assert all(m["alias"] for m in dbirth.values())
            # seq: 0 at NBIRTH, then +1 per message of the node, in arrival order.
            seqs = [m["seq"] for m in scada.seen if m["type"] in ("NBIRTH", "DBIRTH", "DDATA")]
            assert seqs == list(range(len(seqs))), seqs
            # Each DDATA (aliases resolved by pysparkplug from the DBIRTH) is a native pack.
            await observer.wait_for(lambda ms: len(by_time(observer, "vmc-a")) >= 3)
            for dev in ("vmc-a", "pump-1"):
                native = by_time(observer, dev)
                for ddata in scada.of("DDATA", dev):
                    ts = ddata["metrics"][0]["timestamp"]
                    if ts in native:
                        assert values(ddata) == native_values(native[ts]), dev
                        assert not any(m["historical"] for m in ddata["metrics"])
            assert len(set(by_time(observer, "vmc-a")) & {
                d["metrics"][0]["timestamp"] for d in scada.of("DDATA", "vmc-a")}) >= 2

            # Broker outage: the backlog arrives in order, is_historical, after new births.
            broker.stop()
            await asyncio.sleep(4)
            before = len(scada.seen)
            broker.start()

            def held(dev: str) -> list[int]:
                """Reading times of the first copies that came as historical, in arrival order
                (a row in flight when the broker died is sent again: at least once)."""
                first: dict[int, bool] = {}
                for d in scada.of("DDATA", dev):
                    first.setdefault(d["metrics"][0]["timestamp"], d["metrics"][0]["historical"])
                return [ts for ts, historical in first.items() if historical]

            await scada.wait_for(lambda: all(len(held(d)) >= 8 for d in ("vmc-a", "pump-1")),
                                 timeout=60)
            after = scada.seen[before:]
            [rebirth] = [m for m in after if m["type"] == "NBIRTH"]
            new_bdseq = {m["name"]: m["value"] for m in rebirth["metrics"]}["bdSeq"]
            assert new_bdseq == (bdseq + 1) % 256  # a new session: bdSeq + 1
            for dev in ("vmc-a", "pump-1"):
                assert held(dev) == sorted(held(dev)), dev
                native = by_time(observer, dev)
                for ddata in scada.of("DDATA", dev):
                    if ddata["metrics"][0]["historical"] and ddata["metrics"][0]["timestamp"] \
                            in native:
                        assert values(ddata) == native_values(
                            native[ddata["metrics"][0]["timestamp"]])
            # Mosquitto publishes the Will of every client as it shuts down: that NDEATH (maybe
            # twice: QoS 1 to a persistent session) names the lost session's bdSeq, so a host
            # never takes it for the new one. The new session numbers from its NBIRTH again.
            assert {d["bdSeq"]["value"] for d in scada.of("NDEATH")} <= {bdseq}
            seqs = [m["seq"] for m in after[after.index(rebirth):]
                    if m["type"] in ("NBIRTH", "DBIRTH", "DDATA", "DDEATH")]
            assert seqs == [i % 256 for i in range(len(seqs))]

            # A host asks for a rebirth (NCMD encoded by pysparkplug): same bdSeq, seq 0.
            dbirths = len(scada.of_type("DBIRTH"))
            await scada.send("rebirth site gw-test")
            await scada.wait_for(lambda: len(scada.of("NBIRTH")) >= 3
                                 and len(scada.of_type("DBIRTH")) >= dbirths + 2)
            asked = scada.of("NBIRTH")[-1]
            assert asked["seq"] == 0
            assert {m["name"]: m["value"] for m in asked["metrics"]}["bdSeq"] == new_bdseq
            again = scada.seen[scada.seen.index(asked):]
            assert [m["seq"] for m in again[:3]] == [0, 1, 2]
            assert {m["topic"].rsplit("/", 1)[-1] for m in again[1:3]} == {"vmc-a", "pump-1"}
            reborn = {m["name"]: m for m in again[1]["metrics"]}
            assert all(m["value"] is not None for m in reborn.values())  # current values

            # A DCMD write goes through point.write (audit event by sparkplug); an unknown point
            # is refused and nothing is written.
            await scada.send("dcmd site gw-test vmc-a pressure_setpoint 130")
            await scada.send("dcmd site gw-test vmc-a no_such_point 1")
            await observer.wait_for(lambda ms: any(
                m.topic == f"{ROOT}/evt" and m.body.get("type") == "point.written"
                for m in ms), timeout=15)
            written = [m.body for m in observer.messages if m.topic == f"{ROOT}/evt"
                       and m.body.get("type") == "point.written"]
            assert [(w["n"], w["value"], w["by"]) for w in written] == [
                ("pressure_setpoint", 130, "sparkplug")]

            # SIGKILL: the broker publishes the Will: NDEATH with the current NBIRTH's bdSeq.
            killed = len(scada.seen)
            await agent.kill()
            await scada.wait_for(lambda: any(m["type"] == "NDEATH" for m in scada.seen[killed:]),
                                 timeout=90)
            ndeath = next(m for m in scada.seen[killed:] if m["type"] == "NDEATH")
            assert ndeath["bdSeq"]["name"] == "bdSeq" and ndeath["bdSeq"]["value"] == new_bdseq
            assert ndeath["qos"] == 1 and not ndeath["retain"]
    finally:
        if agent.alive:
            await agent.stop()
        broker.stop()


@pytest.mark.timeout(90)
async def test_primary_host_gates_publishing_and_writes_off(
        tmp_path: Path, modbus_building: tuple, pysparkplug: Path) -> None:
    _, modbus_port = modbus_building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    agent = AgentProcess(sp_config(tmp_path, broker, modbus_port, primary_host="scada-1"),
                         tmp_path / "agent.log")
    try:
        async with host(pysparkplug, broker.port) as scada, \
                observing(broker.port, f"{ROOT}/#", client_id="sp-native") as observer:
            await scada.send("state scada-1 false 1000")
            await agent.start()
            await asyncio.sleep(3)
            assert not [m for m in scada.seen if m["type"] != "STATE"]  # host offline: nothing
            assert not observer.bodies("/tm")  # the outbox keeps the rows for every profile
            await scada.send("state scada-1 true 2000")
            await scada.wait_for(lambda: len(scada.of("DDATA", "vmc-a")) >= 3)
            assert len(scada.of("NBIRTH")) == 1
            # Rows made while the host was offline come as historical, then live ones.
            flags = [d["metrics"][0]["historical"] for d in scada.of("DDATA", "vmc-a")]
            assert flags[0] is True
            # writes: false (the default): a DCMD is refused, nothing is written.
            await scada.send("dcmd site gw-test vmc-a pressure_setpoint 130")
            await asyncio.sleep(1.5)
            assert not [m for m in observer.messages
                        if m.body.get("type") == "point.written"]
            assert "writes are off" in agent.log.read_text()
            # The primary host goes offline: NDEATH first, then silence until it is back.
            await scada.send("state scada-1 false 3000")
            await scada.wait_for(lambda: bool(scada.of("NDEATH")))
            bdseq = {m["name"]: m["value"] for m in scada.of("NBIRTH")[0]["metrics"]}["bdSeq"]
            assert scada.of("NDEATH")[0]["bdSeq"]["value"] == bdseq
            count = len(scada.of("DDATA", "vmc-a"))
            await asyncio.sleep(2)
            assert len(scada.of("DDATA", "vmc-a")) == count
    finally:
        if agent.alive:
            await agent.stop()
        broker.stop()
