"""Agent benchmark (issue 2): CPU per 1,000 delivered readings, RSS, idle CPU, bytes written,
Modbus requests per poll. Not a test: it prints figures and ratios.

The agent runs as its own process (`batigate run`), so psutil measures it alone; the simulated
building (in this process, so its request counter is readable) and mosquitto run beside it.
The reference figures are those the issue gives for the leading open-source Python gateway on
this kind of machine: 0.12 ms CPU per reading at 1,000 readings/s, 3.5 % of a core idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from agent.uplink import watch
from tests.broker import Mosquitto

REF_CPU_MS_PER_READING = 0.12
REF_IDLE_CPU_PERCENT = 3.5
WARMUP = 4.0


@dataclass
class Result:
    name: str
    rate: float  # readings delivered per second
    cpu_ms_per_reading: float
    cpu_percent: float
    rss_peak_mb: float
    rss_steady_mb: float
    write_bytes_per_1000: float
    requests_per_poll: float
    points_per_poll: float


def _config(workdir: Path, broker: int, modbus: int, devices: int, poll: str) -> Path:
    units = [1, 2]
    doc = {
        "gateway": {"id": "gw-bench", "site": "bench"},
        "mqtt": {"host": "127.0.0.1", "port": broker, "tls": False},
        "buffer": {"path": str(workdir / "outbox.db")},
        "control": {"socket": str(workdir / "control.sock")},
        "health": {"interval": "1h"},
        "log_level": "warning",
        "buses": [{"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1", "port": modbus}],
        "devices": [{"id": f"dev-{i}", "bus": "lan", "address": units[i % 2], "poll": poll,
                     "timeout": "1s", "points": DEMO_POINTS[units[i % 2]]}
                    for i in range(devices)],
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _write_bytes(proc: psutil.Process) -> int:
    try:
        return proc.io_counters().write_bytes
    except (psutil.AccessDenied, AttributeError):
        return 0


async def measure(name: str, devices: int, poll: str, seconds: float) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="batigate-bench-"))
    broker = Mosquitto(workdir)
    broker.start()
    building = ModbusBuilding()
    modbus = await building.start(0)
    config = _config(workdir, broker.port, modbus, devices, poll)
    readings = 0
    polls = 0

    async def count() -> None:
        nonlocal readings, polls
        async for topic, payload, _ in watch("127.0.0.1", broker.port, "bgw/v1/bench/+/dev/+/tm"):
            del topic
            readings += len(json.loads(payload)["e"])
            polls += 1

    counter = asyncio.ensure_future(count())
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(config),
        stderr=asyncio.subprocess.DEVNULL)
    proc = psutil.Process(agent.pid)
    try:
        await asyncio.sleep(WARMUP)
        cpu0 = sum(proc.cpu_times()[:2])
        io0 = _write_bytes(proc)
        r0, p0, q0 = readings, polls, sum(building.request_count.values())
        rss: list[float] = []
        for _ in range(int(seconds * 4)):
            await asyncio.sleep(0.25)
            rss.append(proc.memory_info().rss / 2**20)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        written = _write_bytes(proc) - io0
        delivered = readings - r0
        polled = polls - p0
        requests = sum(building.request_count.values()) - q0
    finally:
        agent.terminate()
        await agent.wait()
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter
        await building.stop()
        broker.stop()
    per_poll_points = sum(len(DEMO_POINTS[(1, 2)[i % 2]]) for i in range(devices)) / devices
    return Result(
        name=name, rate=delivered / seconds,
        cpu_ms_per_reading=1000 * cpu / delivered if delivered else float("nan"),
        cpu_percent=100 * cpu / seconds, rss_peak_mb=max(rss), rss_steady_mb=rss[-1],
        write_bytes_per_1000=1000 * written / delivered if delivered else float("nan"),
        requests_per_poll=requests / polled if polled else float("nan"),
        points_per_poll=per_poll_points)


async def main_async() -> list[Result]:
    return [
        await measure("~100 readings/s", devices=12, poll="1s", seconds=15),
        await measure("~1,000 readings/s", devices=25, poll="200ms", seconds=15),
        await measure("idle (3 devices, 60 s poll)", devices=3, poll="60s", seconds=20),
    ]


def main() -> None:
    results = asyncio.run(main_async())
    print("\nagent benchmark (agent process only; simulated building and mosquitto beside it)")
    header = (f"{'load':<28} {'readings/s':>10} {'CPU ms/rdg':>10} {'vs ref':>7} {'CPU %':>6} "
              f"{'RSS peak':>8} {'RSS now':>8} {'B wr/1k':>8} {'req/poll':>8} {'naive':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        idle = r.rate < 10  # per-reading figures mean nothing without readings
        ratio = (r.cpu_percent / REF_IDLE_CPU_PERCENT) if idle else (
            r.cpu_ms_per_reading / REF_CPU_MS_PER_READING)
        per_reading = f"{'-':>10} " if idle else f"{r.cpu_ms_per_reading:>10.4f} "
        written = f"{'-':>8} " if idle else f"{r.write_bytes_per_1000:>8.0f} "
        print(f"{r.name:<28} {r.rate:>10.0f} {per_reading}{ratio:>6.2f}x "
              f"{r.cpu_percent:>6.2f} {r.rss_peak_mb:>7.1f}M {r.rss_steady_mb:>7.1f}M "
              f"{written}{r.requests_per_poll:>8.2f} {r.points_per_poll:>6.1f}")
    print(f"vs ref: CPU per reading against {REF_CPU_MS_PER_READING} ms (busy rows), idle CPU "
          f"against {REF_IDLE_CPU_PERCENT} % of a core (idle row); below 1.00x is better.")
    print(f"naive = Modbus requests per poll with one request per point; cores: "
          f"{os.cpu_count()}")


if __name__ == "__main__":
    main()
