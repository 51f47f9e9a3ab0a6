"""Fixtures: a libmodbus slave (our own small C program, built once per run) on TCP, and the same
slave behind the RS-485 stand-in (rs485.py) for RTU.

libmodbus comes from Debian (`apt-get install libmodbus-dev`, done by images/host-setup.sh and
so by .ci/run). Without it these tests fail and say so: a skipped interop test would pass for
nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
SOURCE = HERE / "slave.c"
START_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def slave_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The libmodbus slave, compiled with gcc against the system's libmodbus."""
    try:
        return build_slave(tmp_path_factory.mktemp("libmodbus") / "slave")
    except RuntimeError as exc:
        pytest.fail(str(exc))


def build_slave(target: Path) -> Path:
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        raise RuntimeError("gcc and pkg-config are needed to build the libmodbus slave "
                           "(apt-get install gcc pkg-config libmodbus-dev)")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmodbus"],
                           capture_output=True, text=True, check=False)
    if flags.returncode != 0:
        raise RuntimeError("libmodbus is not installed: apt-get install libmodbus-dev "
                           f"({flags.stderr.strip()})")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(target), str(SOURCE),
                    *flags.stdout.split()], check=True, timeout=120)
    return target


@dataclass
class TcpSlave:
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def requests(self) -> list[tuple[int, int, int, int]]:
        """(unit, function code, address, count) of every request the slave received."""
        if not self.log.exists():
            return []
        return [tuple(int(x) for x in line.split())  # type: ignore[misc]
                for line in self.log.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def tcp_slave(binary: Path, tmp_path: Path, units: str = "1,2,3,4,5") -> Iterator[TcpSlave]:
    log = tmp_path / f"libmodbus-tcp-{os.getpid()}-{len(list(tmp_path.iterdir()))}.log"
    process = subprocess.Popen([str(binary), "tcp", "0", units], stdout=subprocess.PIPE,
                               env={**os.environ, "SLAVE_LOG": str(log)})
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == [b"ready"], f"libmodbus slave did not start: {ready!r}"
        yield TcpSlave(int(ready[1]), log, process)
    finally:
        process.terminate()
        process.wait(5)


@dataclass
class Rs485Line:
    port: str
    frames_path: Path
    process: subprocess.Popen[bytes]

    def frames(self) -> list[dict[str, Any]]:
        if not self.frames_path.exists():
            return []
        complete = self.frames_path.read_text().split("\n")[:-1]  # not a line being written
        return [json.loads(line) for line in complete if line.strip()]

    def master_violations(self) -> list[dict[str, Any]]:
        return [f for f in self.frames() if f["violation"]]


@contextlib.contextmanager
def rs485_line(binary: Path, tmp_path: Path, *, baud: int = 9600, parity: str = "E",
               stopbits: int = 1, units: str = "1") -> Iterator[Rs485Line]:
    frames = tmp_path / f"frames-{len(list(tmp_path.iterdir()))}.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.interop.modbus.rs485", "--slave-bin", str(binary),
         "--baud", str(baud), "--parity", parity, "--stopbits", str(stopbits), "--units", units,
         "--frames", str(frames)],
        stdout=subprocess.PIPE, cwd=HERE.parents[2])
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == [b"ready"], f"RS-485 stand-in did not start: {ready!r}"
        yield Rs485Line(ready[1].decode(), frames, process)
    finally:
        process.terminate()
        process.wait(5)
