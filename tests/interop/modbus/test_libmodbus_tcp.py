"""The Modbus driver and `batigate scan modbus` against libmodbus 3.1.6 over TCP.

libmodbus is an implementation we did not write: its framing, exception answers and its habit of
answering an unknown function (FC 43) only after its response timeout (0.5 s), with its input
flushed, are its own. The register map is described in slave.c.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.config import loader as config_mod
from agent.cli.main import main
from agent.sdk.errors import DriverError
from agent.sdk.models import Quality
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from tests.cli.helpers import write_config
from tests.integration.helpers import running_agent
from tests.interop.modbus.conftest import tcp_slave

READ_FCS = {1, 2, 3, 4}


def tcp_bus(port: int) -> ModbusBusConfig:
    return ModbusBusConfig.model_validate({"id": "lan", "driver": "modbus-tcp",
                                           "host": "127.0.0.1", "port": port})


def device(unit: int, points: list[dict[str, Any]], timeout: str = "500ms") -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({"id": f"unit-{unit}", "bus": "lan",
                                              "address": unit, "poll": "1s", "timeout": timeout,
                                              "points": points})


MIXED = [
    {"name": "h0", "register": "holding:0"},
    {"name": "h3_signed", "register": "holding:3", "type": "int16"},
    {"name": "h4_wide", "register": "holding:4", "type": "uint32"},
    {"name": "temp", "register": "holding:34", "type": "float32", "unit": "Cel"},
    {"name": "nan", "register": "holding:32", "type": "float32"},
    {"name": "na", "register": "holding:30", "not_available": 65535},
    {"name": "in2", "register": "input:2", "scale": 0.1},
    {"name": "coil3", "register": "coils:3"},
    {"name": "di6", "register": "discrete:6"},
    {"name": "di7", "register": "discrete:7"},
]


async def test_poll_decodes_what_libmodbus_serves(slave_bin: Path, tmp_path: Path) -> None:
    with tcp_slave(slave_bin, tmp_path) as slave:
        async with ModbusDriver(tcp_bus(slave.port)) as driver:
            values = {v.name: v for v in await driver.poll(device(2, MIXED))}
        requests = slave.requests()
    assert values["h0"].value == 200
    assert values["h3_signed"].value == 203
    assert values["h4_wide"].value == (204 << 16) | 205
    assert values["temp"].value == 21.5
    assert values["in2"].value == 100.2
    assert (values["coil3"].value, values["di6"].value, values["di7"].value) == (True, True, False)
    # bad points say why
    assert (values["nan"].quality, values["nan"].reason) == (Quality.BAD,
                                                             "the device sent NaN (float32)")
    assert values["na"].quality is Quality.BAD
    assert values["na"].reason == "not available (the device sent 65535)"
    # coalesced: holding 0..5 and 30..35 in two reads, one each for input, coils, discrete
    assert sorted((fc, a, n) for _, fc, a, n in requests) == [
        (1, 3, 1), (2, 6, 2), (3, 0, 6), (3, 30, 6), (4, 2, 1)]


async def test_writes_reach_libmodbus_and_its_refusal_is_reported(slave_bin: Path,
                                                                  tmp_path: Path) -> None:
    points = [{"name": "setpoint", "register": "holding:5", "writable": True},
              {"name": "total", "register": "holding:10", "type": "int32", "writable": True},
              {"name": "relay", "register": "coils:4", "writable": True},
              {"name": "hole", "register": "holding:7", "writable": True}]
    dev = device(1, points)
    by_name = {p.name: p for p in dev.points}
    with tcp_slave(slave_bin, tmp_path) as slave:
        async with ModbusDriver(tcp_bus(slave.port)) as driver:
            await driver.write(dev, by_name["setpoint"], 4321)
            await driver.write(dev, by_name["total"], -100000)
            await driver.write(dev, by_name["relay"], True)
            with pytest.raises(DriverError, match=r"holding:7 with exception 02 \(illegal data "
                                                  r"address\)"):
                await driver.write(dev, by_name["hole"], 1)
            values = {v.name: v for v in await driver.poll(device(1, points[:3]))}
        requests = slave.requests()
    assert (values["setpoint"].value, values["total"].value, values["relay"].value) == (
        4321, -100000, True)
    assert [fc for _, fc, _, _ in requests if fc not in READ_FCS] == [6, 16, 5, 6]


async def test_a_refused_register_is_isolated_and_its_neighbours_read_together(
        slave_bin: Path, tmp_path: Path) -> None:
    """holding:7 is not in libmodbus' map here: the run 0..9 is refused; halving it finds 7, and
    the nine good neighbours keep being read in three requests, not nine."""
    points = [{"name": f"r{i}", "register": f"holding:{i}"} for i in range(10)]
    dev = device(3, points)
    with tcp_slave(slave_bin, tmp_path) as slave:
        async with ModbusDriver(tcp_bus(slave.port)) as driver:
            first = await driver.poll(dev)
            before = len(slave.requests())
            second = await driver.poll(dev)
            per_poll = len(slave.requests()) - before
    for values in (first, second):
        good = {v.name: v.value for v in values if v.quality is Quality.GOOD}
        assert good == {f"r{i}": 300 + i for i in range(10) if i != 7}
        [bad] = [v for v in values if v.quality is Quality.BAD]
        assert (bad.name, bad.reason) == ("r7", "refused by the device: exception 02 "
                                                "(illegal data address)")
    assert before == 7  # 0-9, 0-4, 5-9, 5-6, 7-9, 7, 8-9 (one read per point would be 11)
    assert per_poll == 4  # 0-4, 5-6, 7, 8-9 (one read per point would be 10)


async def test_an_absent_unit_is_down_and_the_next_one_is_not(slave_bin: Path,
                                                              tmp_path: Path) -> None:
    points = [{"name": "h0", "register": "holding:0"}]
    with tcp_slave(slave_bin, tmp_path, units="1,2") as slave:
        async with ModbusDriver(tcp_bus(slave.port)) as driver:
            with pytest.raises(DriverError, match="unit 9 .*no answer within 0.2s"):
                await driver.poll(device(9, points, timeout="200ms"))
            [value] = await driver.poll(device(2, points, timeout="200ms"))
            assert value.value == 200
            assert driver.stats.timeouts == 1


async def test_a_late_answer_does_not_cost_the_next_unit_its_own(slave_bin: Path,
                                                                  tmp_path: Path) -> None:
    """libmodbus refuses FC 43 after 0.5 s and flushes what came meanwhile. The request after
    the timeout waits for that late answer (or reconnects) instead of being thrown away and then
    matched with the stale answer's transaction id."""
    with tcp_slave(slave_bin, tmp_path, units="1,2") as slave:
        bus = tcp_bus(slave.port)
        async with ModbusDriver(bus) as driver:
            link = driver._link
            assert link is not None
            await link.open(1.0)
            with pytest.raises(DriverError, match="unit 1 .*no answer within 0.3s"):
                await link.identify(1, 0.3)
            [value] = await driver.poll(device(2, [{"name": "h0", "register": "holding:0"}],
                                               timeout="300ms"))
            assert value.value == 200
            assert driver.stats.garbage == 0
        assert [(u, fc) for u, fc, _, _ in slave.requests()] == [(1, 43), (2, 3)]


async def _invoke(args: list[str]) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, main, args)


async def test_read_says_why_a_point_is_bad(slave_bin: Path, tmp_path: Path) -> None:
    """`batigate read` (no agent running: it opens the bus itself) against libmodbus."""
    points = [{"name": "ok", "register": "holding:6"}, {"name": "hole", "register": "holding:7"},
              {"name": "na", "register": "holding:30", "not_available": 65535},
              {"name": "nan", "register": "holding:32", "type": "float32"}]
    with tcp_slave(slave_bin, tmp_path) as slave:
        path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                              "host": "127.0.0.1", "port": slave.port}],
                            devices=[{"id": "vmc", "bus": "lan", "address": 4, "poll": "1s",
                                      "timeout": "500ms", "points": points}])
        as_json = await _invoke(["read", "vmc", "--json", "--config", str(path)])
        table = await _invoke(["read", "vmc", "--config", str(path)])
    assert as_json.exit_code == 0, as_json.output
    assert {p["n"]: (p["v"], p["q"], p.get("reason")) for p in
            json.loads(as_json.output)["points"]} == {
        "ok": (406, "good", None),
        "hole": (None, "bad", "refused by the device: exception 02 (illegal data address)"),
        "na": (None, "bad", "not available (the device sent 65535)"),
        "nan": (None, "bad", "the device sent NaN (float32)")}
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())  # rich may wrap the column
    for reason in ("exception 02", "not available", "NaN"):
        assert reason in text, table.output


async def test_the_running_agent_says_why_too(slave_bin: Path, tmp_path: Path) -> None:
    """Through the agent's control socket: `device.read` (batigate read) and `point.read`."""
    points = [{"name": "ok", "register": "holding:6"}, {"name": "hole", "register": "holding:7"}]
    with tcp_slave(slave_bin, tmp_path) as slave:
        path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                              "host": "127.0.0.1", "port": slave.port}],
                            devices=[{"id": "vmc", "bus": "lan", "address": 4, "poll": "1s",
                                      "timeout": "500ms", "points": points}])
        config = config_mod.load(path)
        async with running_agent(config):
            whole = await _invoke(["read", "vmc", "--json", "--config", str(path)])
            one = await _invoke(["read", "vmc", "hole", "--json", "--config", str(path)])
    reason = "refused by the device: exception 02 (illegal data address)"
    assert whole.exit_code == 0 and one.exit_code == 0, (whole.output, one.output)
    assert json.loads(whole.output)["via"] == "agent"
    assert [p.get("reason") for p in json.loads(whole.output)["points"]] == [None, reason]
    assert json.loads(one.output)["points"] == [{"n": "hole", "v": None, "u": None, "q": "bad",
                                                 "reason": reason}]


async def test_scan_finds_every_unit_after_libmodbus_refuses_identification_slowly(
        slave_bin: Path, tmp_path: Path) -> None:
    """libmodbus answers FC 43 with exception 01 only after 0.5 s, longer than the scan waits,
    and drops what came meanwhile; the next unit's probe must not be lost to it (issue #15: ids
    1-5 gave [1, 3, 5])."""
    with tcp_slave(slave_bin, tmp_path, units="1,2,3,4,5") as slave:
        path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                              "host": "127.0.0.1", "port": slave.port}],
                            devices=[])
        result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "1-7", "--timeout",
                                "0.3", "--json", "--config", str(path)])
        requests = slave.requests()
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)["found"]
    assert found == [{"unit": u, "identification": None} for u in (1, 2, 3, 4, 5)]
    assert [u for u, fc, _, _ in requests if fc == 43] == [1, 2, 3, 4, 5]
