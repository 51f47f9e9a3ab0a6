"""The whole path a reading takes: Modbus peer -> agent -> outbox -> real mosquitto -> backend."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from agent.uplink.session import WINDOW
from tests.broker import Mosquitto
from tests.integration.helpers import load, running_agent, write_config
from tests.observer import Observer
from tests.observer import observing as observe

ROOT = "bgw/v1/site-a/gw-test"


@pytest.fixture
def building(modbus_building: tuple[ModbusBuilding, int]) -> tuple[ModbusBuilding, int]:
    return modbus_building


def observing(port: int) -> Any:
    return observe(port, f"{ROOT}/#")


def devices(poll: str = "300ms", units: tuple[int, ...] = (1, 2)) -> list[dict]:
    names = {1: "vmc-a", 2: "pump-1", 3: "vmc-b"}
    return [{"id": names[u], "bus": "lan", "address": u, "poll": poll, "timeout": "300ms",
             "points": DEMO_POINTS[u]} for u in units]


def seqs(observer: Observer) -> list[int]:
    return [m.body["seq"] for m in observer.messages if "seq" in m.body and not m.retained]


async def test_readings_arrive_as_senml_in_the_envelope(tmp_path: Path, broker: Mosquitto,
                                                        building: tuple) -> None:
    _, modbus_port = building
    config = load(write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                               devices=devices()))
    async with observing(broker.port) as observer, running_agent(config):
        await observer.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("pump-1/tm")])
                                >= 2)
    tm = observer.bodies("vmc-a/tm")[0]
    assert set(tm) == {"v", "gw", "sess", "seq", "mid", "ts", "hist", "e"}
    assert tm["v"] == 1 and tm["gw"] == "gw-test" and tm["hist"] is False
    first = tm["e"][0]
    assert first["bn"] == "urn:dev:bgw:gw-test:vmc-a:" and isinstance(first["bt"], float)
    names = {r["n"] for r in tm["e"]}
    assert names == {p["name"] for p in DEMO_POINTS[1]}
    units = {r.get("u") for r in tm["e"]}
    assert units <= {"Pa", "1/min", "Cel", "%", "W", "m3/s", "s", "A", "count", None, "m",
                     "J", "%RH"}, units
    state = [m for m in observer.messages if m.topic == f"{ROOT}/state"]
    assert state[0].body["online"] is True
    birth = observer.bodies("/birth")[0]
    assert [d["id"] for d in birth["devices"]] == ["vmc-a", "pump-1"]
    dev_state = [m for m in observer.messages if m.topic == f"{ROOT}/dev/vmc-a/state"]
    # subscribed before the agent started: delivered live (not as a retained copy), and ok
    assert dev_state and dev_state[0].retained is False and dev_state[0].body["state"] == "ok"
    # after a clean stop the retained state says offline
    assert observer.messages[-1].topic == f"{ROOT}/state"
    assert observer.messages[-1].body["online"] is False


async def test_a_dead_device_does_not_delay_the_others(tmp_path: Path, broker: Mosquitto,
                                                       building: tuple) -> None:
    sim, modbus_port = building
    sim.set_silent(3, True)
    config = load(write_config(tmp_path, broker_port=broker.port, modbus_port=modbus_port,
                               devices=devices(poll="500ms", units=(1, 3))))
    async with observing(broker.port) as observer, running_agent(config) as agent:
        await asyncio.sleep(5)
        good, dead = agent.pollers["vmc-a"], agent.pollers["vmc-b"]
        # 10 ticks in 5 s; a dead neighbour costs at most a few timeouts of bus time, then it is
        # only retried with backoff
        assert good.stats.polls >= 8, good.stats
        assert good.stats.failures == 0
        assert dead.state.value == "down" and dead.stats.polls == 0
        assert dead.stats.failures <= 5, dead.stats  # backoff: 0.5, 1, 2, 4 s...
    events = observer.bodies("/evt")
    assert any(e["type"] == "device.down" and e["dev"] == "vmc-b" for e in events)
    states = observer.bodies("dev/vmc-b/state")
    assert states[-1]["state"] == "down" and "reason" in states[-1]


async def test_broker_outage_loses_nothing_and_flags_the_backlog(tmp_path: Path,
                                                                  building: tuple) -> None:
    """The broker stops for several seconds while the agent polls; once it is back every message
    arrives, in order, none lost, and what was held back says hist: true."""
    _, modbus_port = building
    server = Mosquitto(tmp_path, persistent=True)
    server.conf.parent.mkdir(exist_ok=True)
    server.start()
    config = load(write_config(tmp_path, broker_port=server.port, modbus_port=modbus_port,
                               devices=devices(poll="200ms")))
    try:
        async with observing(server.port) as observer, running_agent(config) as agent:
            await observer.wait_for(lambda ms: len(seqs(observer)) >= 5)
            server.stop()
            await asyncio.sleep(4)
            held = agent.outbox.depth() + agent.outbox.pending
            assert held >= 20, held  # ~40 polls happened meanwhile, all kept
            server.start()
            await asyncio.wait_for(agent.outbox.emptied.wait(), 20)
            boundary = agent.uplink.held_back_until
            # and live data flows again after the backlog
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/tm") and m.body["seq"] > boundary for m in ms))
    finally:
        server.stop()
    got = seqs(observer)
    assert sorted(set(got)) == list(range(min(got), max(got) + 1)), "a seq is missing"
    telemetry = observer.first_deliveries("/tm")
    for lane in (True, False):  # the backlog and live data each keep their order
        tm_seqs = [b["seq"] for b in telemetry if b["hist"] is lane]
        assert tm_seqs == sorted(tm_seqs), f"telemetry (hist={lane}) out of order"
    # only what was in flight when the broker went away may arrive twice: the agent's QoS 1
    # window, and what the broker had sent the observer without its PUBACK (mosquitto: 20)
    assert len(got) - len(set(got)) <= WINDOW + 20
    # what the outage held back says so (~20 polls at least); what was taken after the
    # reconnection does not
    assert len([b for b in telemetry if b["hist"]]) >= 20
    assert all(not b["hist"] for b in telemetry if b["seq"] > boundary)


RUN = [sys.executable, "-m", "agent", "run", "--config"]


async def test_sigkill_and_restart_loses_or_renumbers_nothing(tmp_path: Path,
                                                              building: tuple) -> None:
    """The agent is killed with SIGKILL (broker down, so everything is in the outbox) and started
    again; once the broker is up, every message that was committed before the kill arrives with
    the seq and mid it had, and the seqs of the whole run are contiguous."""
    _, modbus_port = building
    server = Mosquitto(tmp_path, persistent=True)
    server.start()
    path = write_config(tmp_path, broker_port=server.port, modbus_port=modbus_port,
                        devices=devices(poll="200ms"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    try:
        async with observing(server.port) as observer:
            server.stop()  # the observer's session is persisted; the agent finds no broker
            committed: dict[int, str] = {}
            for _ in range(3):
                proc = await asyncio.create_subprocess_exec(*RUN, str(path), env=env,
                                                            stderr=asyncio.subprocess.DEVNULL)
                await asyncio.sleep(2.5)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                db = sqlite3.connect(tmp_path / "outbox.db")
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                rows = dict(db.execute("SELECT seq, mid FROM outbox"))
                db.close()
                for seq, mid in committed.items():
                    assert rows.get(seq) == mid, f"seq {seq} lost or renumbered"
                committed = rows
            assert len(committed) >= 20
            server.start()
            proc = await asyncio.create_subprocess_exec(*RUN, str(path), env=env,
                                                        stderr=asyncio.subprocess.DEVNULL)
            try:
                await observer.wait_for(
                    lambda ms: set(committed) <= {m.body.get("seq") for m in ms}, timeout=30)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
    finally:
        server.stop()
    delivered = {m.body["seq"]: m.body["mid"] for m in observer.messages if "mid" in m.body}
    for seq, mid in committed.items():
        assert delivered[seq] == mid
    got = sorted(delivered)
    assert got == list(range(got[0], got[-1] + 1)), "hole in the seqs"
    assert got[0] == 1
