"""A real agent (`python -m agent run`) against a dead unit on a libmodbus TCP slave and a serial
port that refuses parity: each device says once that it is down, with a reason that names the
cause; no pymodbus error flood, no traceback (issue #15, items 3 and 4)."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
import tty
from pathlib import Path

from tests.broker import Mosquitto
from tests.cli.helpers import write_config
from tests.interop.modbus.conftest import tcp_slave

RUN_LIMIT = 20.0


async def test_a_dead_unit_and_a_refusing_port_log_once(slave_bin: Path, tmp_path: Path,
                                                        broker: Mosquitto) -> None:
    master, slave_end = pty.openpty()
    tty.setraw(slave_end)
    port = os.ttyname(slave_end)
    log = tmp_path / "agent.log"
    point = [{"name": "h0", "register": "holding:0"}]
    try:
        with tcp_slave(slave_bin, tmp_path, units="1,2") as slave:
            path = write_config(
                tmp_path, broker_port=broker.port,
                buses=[{"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1",
                        "port": slave.port},
                       {"id": "rs485", "driver": "modbus-rtu", "port": port, "parity": "E"}],
                devices=[{"id": "alive", "bus": "lan", "address": 2, "poll": "300ms",
                          "timeout": "200ms", "points": point},
                         {"id": "dead", "bus": "lan", "address": 9, "poll": "300ms",
                          "timeout": "200ms", "points": point},
                         {"id": "pump", "bus": "rs485", "address": 1, "poll": "300ms",
                          "timeout": "200ms", "points": point}])
            with log.open("wb") as err:
                agent = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agent", "run", "--config", str(path), stderr=err,
                    env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
            try:
                async with asyncio.timeout(RUN_LIMIT):
                    while sum(1 for u, *_ in slave.requests() if u == 9) < 3 or \
                            log.read_text().count("pump") < 1:
                        await asyncio.sleep(0.2)
            finally:
                agent.send_signal(signal.SIGTERM)
                await asyncio.wait_for(agent.wait(), 20)
            tries = sum(1 for u, *_ in slave.requests() if u == 9)
    finally:
        os.close(master)
        os.close(slave_end)
    text = log.read_text()
    lines = text.splitlines()
    assert tries >= 3
    assert "Traceback" not in text
    assert [line for line in lines if "pymodbus" in line] == []
    [dead] = [line for line in lines if "dead" in line]
    assert "device dead is down: unit 9 on 127.0.0.1" in dead
    [pump] = [line for line in lines if "pump" in line]
    assert f"device pump is down: serial port {port} refuses parity E" in pump
    assert not [line for line in lines if "alive" in line]
