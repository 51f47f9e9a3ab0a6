"""`batigate remote` end to end: the CLI as a subprocess (what an operator runs) against real
agents of one site through a real mosquitto, the building's Modbus simulator behind one of them.
Signed mode (the gateways hold the operator's public key, made by `remote keys gen`) and
unsigned mode (no key on either side: read-only commands and the fleet views)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import loader as config_mod
from agent.sim.modbus_building import ModbusBuilding
from tests.broker import Mosquitto
from tests.commands.conftest import config_doc
from tests.commands.mqtt_backend import agent_with_commands

BATIGATE = Path(sys.executable).with_name("batigate")
SITE = "site-a"


class Remote:
    """Runs `batigate remote --host … --no-tls ARGS` with a HOME of its own (no stray key)."""

    def __init__(self, port: int, home: Path, key: Path | None) -> None:
        self.port = port
        self.home = home
        self.key = key

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        base = [str(BATIGATE), "remote", "--host", "127.0.0.1", "--port", str(self.port),
                "--no-tls"]
        if self.key is not None:
            base += ["--sign-key", str(self.key)]
        return await asyncio.create_subprocess_exec(
            *base, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(self.home), "COLUMNS": "200"})

    async def __call__(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        proc = await self.start(*args)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def json(self, *args: str, expect: int = 0, timeout: float = 60) -> Any:
        code, out, err = await self(*args, "--json", timeout=timeout)
        assert code == expect, (code, out, err)
        return json.loads(out)


def gateway_doc(tmp_path: Path, gw: str, *, broker_port: int, modbus_port: int,
                public_key: Path | None) -> dict[str, Any]:
    home = tmp_path / gw
    home.mkdir(exist_ok=True)
    doc = config_doc(home, broker_port=broker_port, modbus_port=modbus_port)
    doc["gateway"]["id"] = gw
    doc["health"] = {"interval": "1s"}
    # A comm_lost alarm that is raised within a second on the gateway without a Modbus peer.
    doc["rules"] = [{"id": "vmc-comm", "type": "comm_lost", "device": "vmc-a", "for": "1s"}]
    if public_key is not None:
        doc["commands"] = {"public_key": str(public_key)}
    return doc


def write(tmp_path: Path, gw: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / gw / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def site(tmp_path: Path, broker: Mosquitto, public_key: Path | None
               ) -> AsyncIterator[dict[str, Any]]:
    """gw-a polls the simulated building; gw-b's Modbus peer is missing (device down, alarm)."""
    sim = ModbusBuilding()
    modbus_port = await sim.start(0)
    paths = {gw: write(tmp_path, gw, gateway_doc(tmp_path, gw, broker_port=broker.port,
                                                 modbus_port=port, public_key=public_key))
             for gw, port in (("gw-a", modbus_port), ("gw-b", 1))}
    try:
        async with agent_with_commands(config_mod.load(paths["gw-a"])) as (a, _), \
                agent_with_commands(config_mod.load(paths["gw-b"])) as (b, _):
            yield {"gw-a": a, "gw-b": b, "paths": paths}
    finally:
        await sim.stop()


async def eventually(check: Any, timeout: float = 15) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.3)
        return found


async def test_signed_every_verb_against_real_agents(tmp_path: Path, broker: Mosquitto) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = home / ".config" / "batigate" / "command.key"
    remote = Remote(broker.port, home, None)  # the default key location, as an operator has it
    code, out, err = await remote("keys", "gen")
    assert code == 0, err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (await remote("keys", "gen"))[0] == 2  # never overwrites a key
    pub = key.with_name("command.key.pub")
    async with site(tmp_path, broker, pub) as agents:
        # One command to a whole site, signed with the default key: the final answers and a
        # summary.
        done = await remote.json("cmd", "--site", SITE, "ping")
        assert done["ok"] and done["signed"] and done["summary"] == {"succeeded": 2}, done
        assert sorted(r["gateway"] for r in done["results"]) == ["site-a/gw-a", "site-a/gw-b"]
        assert all(r["result"]["pong"] for r in done["results"])
        # A gateway named alone is found by its retained state; arguments as key=value.
        read = await remote.json("cmd", "gw-a", "point.read", "dev=vmc-a", "n=fan_running")
        assert read["results"][0]["status"] == "succeeded", read
        assert isinstance(read["results"][0]["result"]["v"], bool)
        # Unsigned to gateways that require a signature: rejected, exit 1, said so.
        refused = await remote.json("--unsigned", "cmd", "site-a/gw-a", "ping", expect=1)
        assert refused["results"][0]["code"] == 401, refused
        # A failing command in a human table, with its summary.
        code, out, _ = await remote("cmd", "site-a/gw-a", "point.read", "dev=nope", "n=x")
        assert code == 1 and "rejected" in out and "summary: rejected 1" in out, out

        # The fleet from retained state, birth, alarms and the latest health.
        gw_b = agents["gw-b"]
        await eventually(lambda: _alarm_raised(gw_b))
        fleet = await remote.json("fleet", "--site", SITE)
        rows = {r["gateway"]: r for r in fleet["gateways"]}
        assert set(rows) == {"gw-a", "gw-b"}
        for gw in ("gw-a", "gw-b"):
            row, agent = rows[gw], agents[gw]
            assert row["online"] is True and row["config"] == agent.config.digest, row
            assert row["version"] and row["devices"] == 1
            assert row["outbox_depth"] is not None and row["health_age"] is not None, row
            assert "clock_synced" in row and "cert_days" in row
        assert rows["gw-b"]["alarms"] == 1 and rows["gw-a"]["alarms"] == 0, rows
        code, out, _ = await remote("fleet", "--site", SITE)
        assert code == 0 and "gw-a" in out and "2 online" in out, out

        # Alarms: the active ones, then the events as they come (an ack sent meanwhile).
        active = await remote.json("alarms", "--site", SITE)
        assert [(a["gateway"], a["alarm"]) for a in active["active"]] == [("gw-b", "vmc-comm")]
        follower = await remote.start("alarms", "--site", SITE, "--follow", "--seconds", "15",
                                      "--json")
        assert follower.stdout is not None
        first = json.loads(await asyncio.wait_for(follower.stdout.readline(), 15))
        assert first["active"][0]["alarm"] == "vmc-comm"
        acked = await remote.json("cmd", "site-a/gw-b", "alarm.ack", "alarm=vmc-comm",
                                  "note=on site")
        assert acked["ok"], acked
        event = json.loads(await asyncio.wait_for(follower.stdout.readline(), 15))
        assert (event["type"], event["gateway"], event["alarm"]) == ("alarm.acked", "gw-b",
                                                                     "vmc-comm")
        follower.kill()
        await follower.wait()

        # fleet --watch: one document per change while it runs.
        code, out, _ = await remote("fleet", "--site", SITE, "--watch", "--seconds", "2.5",
                                    "--json")
        lines = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and len(lines) >= 2 and all(len(x["gateways"]) == 2 for x in lines[1:])

        # config apply: diff, plan (one device restarted live), healthy, confirmed.
        gw_a = agents["gw-a"]
        before = gw_a.config.digest
        doc = yaml.safe_load(agents["paths"]["gw-a"].read_text())
        doc["devices"][0]["poll"] = "400ms"
        new_file = tmp_path / "new-gw-a.yaml"
        new_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        applied = await remote.json("config", "apply", str(new_file), "site-a/gw-a", "--yes",
                                    "--settle", "2")
        assert applied["ok"], applied
        assert applied["plan"]["devices"]["changed"] == ["vmc-a"] and not applied["plan"][
            "restart"], applied["plan"]
        assert any(line.startswith("+") and "poll: 0.4" in line for line in applied["diff"])
        assert applied["apply"]["status"] == "in_progress"
        assert applied["confirm"]["status"] == "succeeded"
        assert applied["final"]["status"] == "succeeded", applied
        assert gw_a.config.digest != before
        # An invalid file never leaves this machine.
        doc["devices"][0]["poll"] = "often"
        new_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, _, err = await remote("config", "apply", str(new_file), "site-a/gw-a", "--yes")
        assert code == 2 and "poll" in err and "nothing sent" in err, err


async def _alarm_raised(agent: Any) -> bool:
    engine = agent.engine
    return engine is not None and bool(engine.active())


async def test_an_unhealthy_apply_is_not_confirmed_and_rolls_back(tmp_path: Path,
                                                                  broker: Mosquitto) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = tmp_path / "ops.key"
    remote = Remote(broker.port, home, key)
    assert (await remote("keys", "gen", "--out", str(key)))[0] == 0
    async with site(tmp_path, broker, key.with_name("ops.key.pub")) as agents:
        gw_a = agents["gw-a"]
        before = gw_a.config.digest
        doc = yaml.safe_load(agents["paths"]["gw-a"].read_text())
        # A second device at an address nothing answers on: it goes down, no confirmation.
        doc["devices"].append({**doc["devices"][0], "id": "vmc-ghost", "address": 77})
        new_file = tmp_path / "bad.yaml"
        new_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        applied = await remote.json("config", "apply", str(new_file), "site-a/gw-a", "--yes",
                                    "--settle", "4", "--confirm-within", "30", expect=1,
                                    timeout=120)
        assert applied["plan"]["devices"]["added"] == ["vmc-ghost"], applied["plan"]
        assert applied["health"] == {"ok": False, "reasons": ["devices down: vmc-ghost"]}
        assert "confirm" not in applied
        assert applied["final"]["status"] == "failed" and "rolled back" in applied["final"][
            "error"], applied
        assert gw_a.config.digest == before


async def test_unsigned_gateways_read_only_verbs(tmp_path: Path, broker: Mosquitto) -> None:
    remote = Remote(broker.port, tmp_path, None)  # no key anywhere: unsigned, said on stderr
    async with site(tmp_path, broker, None):
        code, out, err = await remote("cmd", "--site", SITE, "ping", "--json")
        assert code == 0 and "commands go unsigned" in err, err
        done = json.loads(out)
        assert not done["signed"] and done["summary"] == {"succeeded": 2}, done
        fleet = await remote.json("fleet", "--site", SITE, "--health-wait", "3")
        assert {r["gateway"]: r["online"] for r in fleet["gateways"]} == {"gw-a": True,
                                                                          "gw-b": True}
        code, _, err = await remote("cmd", "--site", "no-such-site", "ping")
        assert code == 1 and "no gateway found" in err, err


async def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    remote = Remote(1, tmp_path, None)
    code, _, err = await remote("fleet")
    assert code == 2 and "cannot reach the broker 127.0.0.1:1" in err, err
