"""`scan wmbus`: listen to the emulated iM871A, list every meter heard, add them to the config."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from click.testing import CliRunner

from agent.config import loader as config_mod
from agent.cli.main import main
from agent.sim.radio_meters import RadioAir, default_radio_meters, keys_file
from agent.sim.radio_stick import EmulatedStick
from tests.cli.helpers import write_config


async def _invoke(args: list[str]):
    return await asyncio.to_thread(CliRunner().invoke, main, args)


async def test_scan_wmbus_lists_the_meters_heard_and_adds_them(tmp_path: Path) -> None:
    meters = default_radio_meters(interval=0.3)
    keys = keys_file(meters, tmp_path / "keys")
    stick = EmulatedStick("im871a", seed=7)
    port = await stick.start_tcp()
    air = RadioAir(meters, time.time, repeat=0.2, collision=0, seed=8)
    air.sticks.append(stick)
    playing = asyncio.create_task(air.run())
    bus = {"id": "radio", "driver": "wmbus", "receiver": "im871a",
           "port": f"socket://127.0.0.1:{port}", "keys": str(keys)}
    path = write_config(tmp_path, buses=[bus], devices=[
        {"id": "flat-101-water", "bus": "radio", "address": "41000101", "profile": "water-meter"}])
    try:
        result = await _invoke(["scan", "wmbus", "--bus", "radio", "--listen", "3s", "--json",
                                "--config", str(path)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        heard = {row["id"]: row for row in doc["heard"]}
        assert set(heard) == {m.source.ident for m in meters}
        water, hca, neighbour = heard["41000101"], heard["43000101"], heard["49990001"]
        assert (water["manufacturer"], water["medium"], water["version"]) == ("SAP", "water", 21)
        assert water["encrypted"] is True and water["key"] == "yes"
        assert water["configured"] == "flat-101-water" and water["count"] >= 3
        assert -64 < water["rssi"] < -56
        assert hca["medium"] == "heat_cost_allocator" and hca["configured"] is None
        assert neighbour["key"] == "no"  # no key for it in the file: counted undecryptable
        assert doc["counters"]["duplicates"] > 0 and doc["counters"]["undecryptable"] > 0

        result = await _invoke(["scan", "wmbus", "--bus", "radio", "--listen", "3s", "--add",
                                "--min-count", "3", "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert "meter(s) heard on radio" in result.output and "added to the config" in result.output
    finally:
        playing.cancel()
        await stick.stop()
    text = path.read_text()
    assert text.startswith("# site notes: keep me")
    config = config_mod.load(path)
    added = {d.address: d for d in config.devices}
    assert added["41000101"].id == "flat-101-water"  # not added twice
    assert added["43000101"].profile == "heat-cost-allocator"
    assert added["42000101"].profile == "heat-meter" and added["42000101"].manufacturer == "KAM"
    assert added["41000102"].profile == "water-meter"
    assert 0.2 <= added["41000102"].interval <= 1.0  # estimated from the telegrams heard
    assert "49990001" in added  # heard often here; --min-count keeps rare neighbours out


async def test_scan_wmbus_refuses_a_bus_that_is_not_radio(tmp_path: Path) -> None:
    path = write_config(tmp_path, buses=[{"id": "meters", "driver": "mbus",
                                          "port": "socket://127.0.0.1:1"}], devices=[])
    result = await _invoke(["scan", "wmbus", "--bus", "meters", "--config", str(path)])
    assert result.exit_code == 2 and "no wmbus bus 'meters'" in result.output
    result = await _invoke(["scan", "wmbus", "--bus", "meters", "--listen", "soon",
                            "--config", str(path)])
    assert result.exit_code == 2
