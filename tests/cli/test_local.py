"""`read`, `write`, `status` against the simulated building: through the running agent's socket,
and straight on the bus when no agent runs."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

from click.testing import CliRunner

from agent.config import loader as config_mod
from agent.cli.main import main
from agent.sim.building import Building
from tests.cli.helpers import write_config
from tests.integration.helpers import running_agent


async def _invoke(args: list[str], input: str | None = None):  # noqa: A002 - click's name
    # The CLI runs its own event loop (asyncio.run): give it a thread of its own, as a shell would
    # be another process.
    return await asyncio.to_thread(CliRunner().invoke, main, args, input=input)


def _config(tmp_path: Path, building: Building) -> Path:
    sections = building.gateway_sections(poll="300ms", meter_poll="1s")
    return write_config(tmp_path, **sections)


async def test_read_and_write_without_an_agent_use_the_bus(tmp_path: Path) -> None:
    building = Building()
    await building.start(0, 0)
    try:
        path = _config(tmp_path, building)
        result = await _invoke(["read", "vmc", "--config", str(path), "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["via"] == "bus"
        points = {p["n"]: p for p in doc["points"]}
        assert points["exhaust_pressure"]["u"] == "Pa" and points["exhaust_pressure"]["q"] == "good"

        result = await _invoke(["write", "vmc", "pressure_setpoint", "130", "--config", str(path)],
                               input="y\n")
        assert result.exit_code == 0, result.output
        assert "written (via bus)" in result.output
        result = await _invoke(["read", "vmc", "pressure_setpoint", "--config", str(path),
                                "--json"])
        assert json.loads(result.output)["points"][0]["v"] == 130

        # refused before anything touches the bus: out of range, not writable, unknown
        result = await _invoke(["write", "vmc", "pressure_setpoint", "999", "-y", "--config",
                                str(path)])
        assert result.exit_code == 2 and "maximum" in result.output
        result = await _invoke(["write", "vmc", "exhaust_pressure", "1", "-y", "--config",
                                str(path)])
        assert result.exit_code == 2 and "not declared writable" in result.output
        result = await _invoke(["read", "nope", "--config", str(path)])
        assert result.exit_code == 2 and "unknown device" in result.output
        # a declined confirmation writes nothing
        result = await _invoke(["write", "vmc", "pressure_setpoint", "140", "--config", str(path)],
                               input="n\n")
        assert result.exit_code == 1 and "Aborted" in result.output

        building.modbus.set_silent(1)
        result = await _invoke(["read", "vmc", "--config", str(path), "--json"])
        assert result.exit_code == 1 and "did not answer" in json.loads(result.output)["error"]
    finally:
        await building.stop()


async def test_status_read_write_go_through_the_running_agent(tmp_path: Path) -> None:
    building = Building()
    await building.start(0, 0)
    try:
        path = _config(tmp_path, building)
        config = config_mod.load(path)
        sock = Path(config.control.socket)
        result = await _invoke(["status", "--config", str(path)])
        assert result.exit_code == 1 and "not running" in result.output
        async with running_agent(config) as agent:
            for _ in range(100):
                if sock.exists() and agent.pollers["vmc"].stats.polls:
                    break
                await asyncio.sleep(0.05)
            mode = stat.S_IMODE(os.stat(sock).st_mode)
            assert mode == 0o660, oct(mode)

            result = await _invoke(["status", "--config", str(path), "--json"])
            assert result.exit_code == 0, result.output
            body = json.loads(result.output)
            assert body["broker"]["connected"] is False  # no broker in this test
            vmc = next(d for d in body["devices"] if d["id"] == "vmc")
            assert vmc["state"] == "ok" and vmc["last_reading_age"] < 5
            assert {"depth", "oldest_age"} <= set(body["outbox"])
            assert "clock_synced" in body and "cert" in body
            human = await _invoke(["status", "--config", str(path)])
            assert human.exit_code == 0 and "devices" in human.output and "vmc" in human.output

            requests_before = building.modbus.request_count[1]
            result = await _invoke(["read", "vmc", "--config", str(path), "--json"])
            assert result.exit_code == 0, result.output
            assert json.loads(result.output)["via"] == "agent"
            assert building.modbus.request_count[1] > requests_before
            result = await _invoke(["read", "meter-1", "volume", "--config", str(path)])
            assert result.exit_code == 0 and "m³" in result.output, result.output  # human units

            result = await _invoke(["write", "vmc", "pressure_setpoint", "125", "-y", "--json",
                                    "--config", str(path)])
            assert json.loads(result.output) == {"ok": True, "via": "agent", "dev": "vmc",
                                                 "n": "pressure_setpoint", "v": 125}
            entries = agent.commands.audit.recent(5)
            assert any(e["op"] == "point.write" and str(e["by"]).startswith("local:uid=0")
                       for e in entries), entries
        assert not sock.exists()  # removed at a clean stop
    finally:
        await building.stop()
