"""Radio building benchmark (issue 11): CPU per telegram and idle CPU of the agent with a building
of 200 radio meters sending every 16 s through the emulated iM871A; memory. Not a test: it
prints figures and ratios.

The agent runs as its own process (`batigate run`), so psutil measures it alone: receive, HCI
framing, decryption (mode 5), decoding, mapping, rules, outbox, MQTT. The emulated stick and
the meters (encoding and encrypting every telegram) and mosquitto run beside it. The baseline
is the same agent, same 200 meters configured, with the stick silent (nothing on the air).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent.sim.radio_meters import RadioAir, RadioMeter, keys_file
from agent.sim.radio_stick import EmulatedStick
from agent.uplink.session import watch
from drivers.mbus.simulator import WaterMeter
from tests.bench.gateway_file import write_gateway_file
from tests.broker import Mosquitto

METERS = 200


@dataclass
class Result:
    name: str
    telegrams_per_s: float  # telegrams that became a tm message
    cpu_ms_per_telegram: float
    cpu_percent: float
    rss_peak_mb: float
    rss_steady_mb: float


def building(interval: float) -> list[RadioMeter]:
    meters = []
    for n in range(METERS):
        source = WaterMeter(0, f"{50_000_000 + n:08d}", "SAP", 0x15, 0x07, time.time,
                            daily_litres=150, base_litres=10_000 + n)
        meters.append(RadioMeter(f"flat-{n:03d}", source, bytes((n % 256, *range(1, 16))),
                                 interval, -60.0 - n % 30))
    return meters


def _config(workdir: Path, broker: int, stick: int, meters: list[RadioMeter]) -> Path:
    return write_gateway_file(
        workdir, broker, log_level="error",
        buses=[{"id": "radio", "driver": "wmbus", "receiver": "im871a",
                "port": f"socket://127.0.0.1:{stick}", "silence": "1h",
                "keys": str(keys_file(meters, workdir / "keys"))}],
        devices=[{"id": m.name, "bus": "radio", "address": m.source.ident,
                  "profile": "water-meter", "interval": f"{m.interval:g}s"} for m in meters])


async def measure(name: str, interval: float, warmup: float, seconds: float,
                  on_air: bool = True) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="batigate-bench-"))
    broker = Mosquitto(workdir)
    broker.start()
    meters = building(interval)
    stick = EmulatedStick("im871a", seed=1)
    port = await stick.start_tcp()
    air = RadioAir(meters, time.time, seed=2)  # 10 % repeats, 3 % collisions
    if on_air:
        air.sticks.append(stick)
    config = _config(workdir, broker.port, port, meters)
    telegrams = 0

    async def count() -> None:
        nonlocal telegrams
        async for _topic, _payload, _ in watch("127.0.0.1", broker.port,
                                               "bgw/v1/bench/+/dev/+/tm"):
            telegrams += 1

    counter = asyncio.ensure_future(count())
    playing = asyncio.ensure_future(air.run())
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(config),
        stderr=asyncio.subprocess.DEVNULL)
    proc = psutil.Process(agent.pid)
    try:
        await asyncio.sleep(warmup)  # start-up, and every meter heard once
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = telegrams
        rss: list[float] = []
        for _ in range(int(seconds * 4)):
            await asyncio.sleep(0.25)
            rss.append(proc.memory_info().rss / 2**20)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        heard = telegrams - t0
    finally:
        agent.terminate()
        await agent.wait()
        for task in (counter, playing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stick.stop()
        broker.stop()
    return Result(name, heard / seconds,
                  1000 * cpu / heard if heard else float("nan"),
                  100 * cpu / seconds, max(rss), rss[-1])


async def main_async() -> list[Result]:
    return [
        await measure("idle: 200 meters, silent air", 16.0, warmup=6, seconds=20, on_air=False),
        await measure("200 meters every 16 s", 16.0, warmup=18, seconds=32),
        await measure("200 meters every 2 s", 2.0, warmup=5, seconds=15),
    ]


def main() -> None:
    results = asyncio.run(main_async())
    idle = results[0]
    print("\nradio building benchmark (agent process only; emulated iM871A, meters and "
          "mosquitto beside it)")
    header = (f"{'load':<32} {'tel/s':>7} {'CPU ms/tel':>10} {'CPU %':>6} {'vs idle':>8} "
              f"{'RSS peak':>8} {'RSS now':>8} {'vs idle':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        per = f"{'-':>10}" if r.telegrams_per_s < 0.5 else f"{r.cpu_ms_per_telegram:>10.3f}"
        print(f"{r.name:<32} {r.telegrams_per_s:>7.1f} {per} {r.cpu_percent:>6.2f} "
              f"{r.cpu_percent / idle.cpu_percent if idle.cpu_percent else float('nan'):>7.2f}x "
              f"{r.rss_peak_mb:>7.1f}M {r.rss_steady_mb:>7.1f}M "
              f"{r.rss_steady_mb / idle.rss_steady_mb:>7.2f}x")
    print("CPU ms/tel: the agent's CPU per telegram that became a tm message (receive, decrypt, "
          "decode, rules, outbox, MQTT), idle included; 10 % of the telegrams are repeats "
          f"(dropped) and 3 % collide (garbage). cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
