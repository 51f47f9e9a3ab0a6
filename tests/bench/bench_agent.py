"""Agent benchmark (issue 2): CPU per 1,000 delivered readings, RSS, idle CPU, bytes written,
Modbus requests per poll. Not a test: it prints figures and ratios.

The agent runs as its own process (`batigate run`), so psutil measures it alone; the simulated
building (in this process, so its request counter is readable) and mosquitto run beside it.
The baseline is measured in the same run, on the same building, broker and config: a naive
gateway process (`naive_agent.py`: one Modbus request per point, one SQLite commit and one MQTT
message per reading). Ratios below 1.00x mean batigate spends less than that baseline.
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

from agent.sim.modbus_building import DEMO_POINTS, ModbusBuilding
from agent.uplink.session import watch
from tests.bench.gateway_file import write_gateway_file
from tests.broker import Mosquitto

WARMUP = 4.0
AGENTS = {"batigate": ["-m", "agent", "run", "--config"],
          "naive": ["-m", "tests.bench.naive_agent"]}


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
    return write_gateway_file(
        workdir, broker, log_level="warning",
        buses=[{"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1", "port": modbus}],
        devices=[{"id": f"dev-{i}", "bus": "lan", "address": units[i % 2], "poll": poll,
                  "timeout": "1s", "points": DEMO_POINTS[units[i % 2]]}
                 for i in range(devices)])


def _write_bytes(proc: psutil.Process) -> int:
    try:
        return proc.io_counters().write_bytes
    except (psutil.AccessDenied, AttributeError):
        return 0


async def measure(name: str, devices: int, poll: str, seconds: float,
                  agent_kind: str = "batigate") -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="batigate-bench-"))
    broker = Mosquitto(workdir)
    broker.start()
    building = ModbusBuilding()
    modbus = await building.start(0)
    config = _config(workdir, broker.port, modbus, devices, poll)
    readings = 0

    async def count() -> None:
        nonlocal readings
        async for topic, payload, _ in watch("127.0.0.1", broker.port, "bgw/v1/bench/+/dev/+/tm"):
            del topic
            readings += len(json.loads(payload)["e"])

    counter = asyncio.ensure_future(count())
    agent = await asyncio.create_subprocess_exec(
        sys.executable, *AGENTS[agent_kind], str(config), stderr=asyncio.subprocess.DEVNULL)
    proc = psutil.Process(agent.pid)
    try:
        await asyncio.sleep(WARMUP)
        cpu0 = sum(proc.cpu_times()[:2])
        io0 = _write_bytes(proc)
        r0, q0 = readings, sum(building.request_count.values())
        rss: list[float] = []
        for _ in range(int(seconds * 4)):
            await asyncio.sleep(0.25)
            rss.append(proc.memory_info().rss / 2**20)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        written = _write_bytes(proc) - io0
        delivered = readings - r0
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
        # per device poll (a batigate message carries a whole poll, a naive one a reading)
        requests_per_poll=requests * per_poll_points / delivered if delivered else float("nan"),
        points_per_poll=per_poll_points)


LOADS = [("~100 readings/s", 12, "1s", 15.0), ("~1,000 readings/s", 25, "200ms", 15.0),
         ("idle (3 devices, 60 s poll)", 3, "60s", 20.0)]


async def main_async() -> list[tuple[Result, Result]]:
    """Each load twice, batigate then the naive baseline, one after the other on this machine."""
    pairs = []
    for name, devices, poll, seconds in LOADS:
        ours = await measure(name, devices, poll, seconds, "batigate")
        naive = await measure(name, devices, poll, seconds, "naive")
        pairs.append((ours, naive))
    return pairs


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:>6.2f}x" if base and base == base and ours == ours else f"{'-':>7}"


def main() -> None:
    pairs = asyncio.run(main_async())
    print("\nagent benchmark (agent process only; simulated building and mosquitto beside it)")
    header = (f"{'load':<28} {'agent':<9} {'readings/s':>10} {'CPU ms/rdg':>10} {'CPU %':>6} "
              f"{'RSS peak':>8} {'RSS now':>8} {'B wr/1k':>8} {'req/poll':>8}")
    print(header)
    print("-" * len(header))
    for ours, naive in pairs:
        for kind, r in (("batigate", ours), ("naive", naive)):
            idle = r.rate < 10  # per-reading figures mean nothing without readings
            per_reading = f"{'-':>10} " if idle else f"{r.cpu_ms_per_reading:>10.4f} "
            written = f"{'-':>8} " if idle else f"{r.write_bytes_per_1000:>8.0f} "
            print(f"{r.name:<28} {kind:<9} {r.rate:>10.0f} {per_reading}{r.cpu_percent:>6.2f} "
                  f"{r.rss_peak_mb:>7.1f}M {r.rss_steady_mb:>7.1f}M {written}"
                  f"{r.requests_per_poll:>8.2f}")
        if ours.rate < 10:
            # an idle naive loop may read 0.00 %: a difference says more than a ratio then
            print(f"{'':<28} {'vs naive':<9} idle CPU {_ratio(ours.cpu_percent, naive.cpu_percent)}"
                  f" ({ours.cpu_percent - naive.cpu_percent:+.2f} points of a core)")
        else:
            print(f"{'':<28} {'ratio':<9} CPU/rdg "
                  f"{_ratio(ours.cpu_ms_per_reading, naive.cpu_ms_per_reading)}  bytes "
                  f"written/rdg {_ratio(ours.write_bytes_per_1000, naive.write_bytes_per_1000)}"
                  f"  requests/poll "
                  f"{_ratio(ours.requests_per_poll, naive.requests_per_poll)}")
    print("ratio = batigate / naive baseline measured just before on this machine (below 1.00x "
          f"is better); points per poll: {pairs[0][0].points_per_poll:.1f}; "
          f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
