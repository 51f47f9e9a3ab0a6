"""Benchmark (not a test): Modbus RTU bus time per poll against the physical minimum, before and
after the 3.5-character silence between frames (issue #15).

The driver polls one libmodbus RTU slave through the RS-485 stand-in
(tests/interop/modbus/rs485.py), which paces every byte at the line's speed, holds the slave's
answer until t3.5 after the request (a conformant slave), and records every frame. A poll of the
device below is 3 requests (holding 0-5, input 0-3, coils 0-7), polled back to back.

- measured: time between the starts of two consecutive polls' first requests, on the line;
- minimum: the same frames' bytes at the line's speed plus one t3.5 silence before every frame
  (before each request and before each answer), the least a conformant master can take;
- violations: requests the master started less than t3.5 after the line went quiet.

"before" keeps only `gap` (0) between frames, as the driver did; "after" keeps t3.5. The line
"9600 8E1" is paced at 11 bits a character; the driver opens its pty as 8N2 (also 11 bits: a pty
cannot do parity), so both sides count the same character time.

Run: .venv/bin/python -m tests.bench.bench_rtu [--polls N]   (about 15 s)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from drivers.modbus import link
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from tests.interop.modbus.conftest import build_slave, rs485_line
from tests.interop.modbus.rs485 import char_time, silences

# (label, baud, parity the line is paced with, stop bits paced, parity/stop bits of the driver)
LINES = [("9600 8E1", 9600, "E", 1, ("N", 2)), ("19200 8N1", 19200, "N", 1, ("N", 1))]
POINTS = [{"name": f"h{i}", "register": f"holding:{i}"} for i in range(6)] + \
    [{"name": f"i{i}", "register": f"input:{i}"} for i in range(4)] + \
    [{"name": f"c{i}", "register": f"coils:{i}"} for i in range(8)]


async def _poll(port: str, baud: int, parity: str, stopbits: int, polls: int) -> None:
    bus = ModbusBusConfig.model_validate({"id": "rs485", "driver": "modbus-rtu", "port": port,
                                          "baudrate": baud, "parity": parity,
                                          "stopbits": stopbits})
    device = ModbusDeviceConfig.model_validate({"id": "vmc", "bus": "rs485", "address": 1,
                                                "poll": "1s", "timeout": "500ms",
                                                "points": POINTS})
    async with ModbusDriver(bus) as driver:
        for _ in range(polls + 1):
            await driver.poll(device)
    await asyncio.sleep(0.05)  # the stand-in writes the last frame once the line is quiet


def figures(frames: list[dict[str, Any]], per_poll: int, tc: float, t35: float,
            polls: int) -> dict[str, float]:
    requests = [f for f in frames if f["from"] == "m"]
    starts = [requests[i]["start"] for i in range(0, len(requests), per_poll)]
    measured = statistics.mean(b - a for a, b in zip(starts, starts[1:], strict=False))
    one_poll = frames[: 2 * per_poll]
    minimum = sum(f["bytes"] for f in one_poll) * tc + len(one_poll) * t35
    violations = sum(1 for f in requests if f["violation"])
    gaps = [f["silence"] for f in requests if f["silence"] is not None]
    return {"measured": measured, "minimum": minimum, "violations": violations,
            "requests": len(requests), "median_silence": statistics.median(gaps)}


def run(binary: Path, polls: int) -> None:
    print(f"\nModbus RTU bus time per poll (3 requests), {polls} polls back to back, "
          "libmodbus slave behind the RS-485 stand-in")
    print(f"{'line':<10} {'silence':<14} {'t3.5 ms':>8} {'min ms':>8} {'poll ms':>8} "
          f"{'ratio':>6} {'median gap ms':>13} {'violations':>11}")
    original = link.inter_frame_silence
    for label, baud, parity, stopbits, (driver_parity, driver_stop) in LINES:
        tc = char_time(baud, parity, stopbits)
        t35 = silences(baud, tc)[1]
        for mode in ("before (gap 0)", "after (t3.5)"):
            link.inter_frame_silence = (lambda bus: bus.gap) if mode.startswith("before") \
                else original
            with tempfile.TemporaryDirectory() as tmp, \
                    rs485_line(binary, Path(tmp), baud=baud, parity=parity,
                               stopbits=stopbits) as line:
                asyncio.run(_poll(line.port, baud, driver_parity, driver_stop, polls))
                result = figures(line.frames(), 3, tc, t35, polls)
            link.inter_frame_silence = original
            print(f"{label:<10} {mode:<14} {t35 * 1e3:>8.2f} {result['minimum'] * 1e3:>8.2f} "
                  f"{result['measured'] * 1e3:>8.2f} "
                  f"{result['measured'] / result['minimum']:>6.2f} "
                  f"{result['median_silence'] * 1e3:>13.2f} "
                  f"{result['violations']:>4}/{result['requests']:<6}")
    print("minimum = the poll's bytes at line speed + one t3.5 before every frame; ratio = "
          "poll / minimum (under 1 means the master broke the silence rule to go faster)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            binary = build_slave(Path(tmp) / "slave")
        except RuntimeError as exc:
            print(f"\nbench_rtu: not run: {exc}")
            return
        run(binary, args.polls)


if __name__ == "__main__":
    main()
