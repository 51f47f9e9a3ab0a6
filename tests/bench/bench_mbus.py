"""Benchmark (not a test): M-Bus decode rate, and the read-out of a 60-meter bus at 2400 baud.

1. Decode: every libmbus conformance frame through `decode_frame`, repeated for a while;
   frames per second, set against how many frames a 2400 baud line can carry at all.
2. Read-out: 60 simulated meters (water and heat, 10 by secondary address, 4 answering in two
   telegrams) polled one after the other through `MBusDriver`, as the poller does. Between the
   driver and the simulator sits `Wire`, a relay that lets bytes through no faster than a 2400 8E1
   line (11 bits a character, one direction at a time), and the meters answer after the
   standard's shortest turnaround (11 bit times). The minimum is the bus time of the same bytes:
   (request + answer bytes) x 11/2400 s + one turnaround per answer. A cold sweep (link resets,
   secondary re-selects) and a warm one are timed.

Run: .venv/bin/python -m tests.bench.bench_mbus [--seconds S]   (about 50 s in all)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.mbus.codec import decode_frame
from drivers.mbus.config import MBusBusConfig, MBusDeviceConfig
from drivers.mbus.driver import MBusDriver
from drivers.mbus.simulator import HeatMeter, MBusSimulator, SimMeter, WaterMeter

BAUD = 2400
CHAR = 11 / BAUD  # start + 8 data + parity + stop
TURNAROUND = 11 / BAUD  # EN 13757-2: a slave answers 11 bit times at the earliest
FRAMES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / \
    "mbus-libmbus" / "test-frames"


# ------------------------------------------------------------------------------ decode


def load_frames() -> list[bytes]:
    return [bytes.fromhex("".join(p.read_text().split())) for p in sorted(FRAMES_DIR.glob("*.hex"))]


def decode_rate(frames: list[bytes], seconds: float) -> tuple[float, int]:
    """(frames per second, records per pass) over the whole set, repeated for `seconds`."""
    records = sum(len(decode_frame(f).records) for f in frames)  # warm up, and check all decode
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for frame in frames:
            decode_frame(frame)
        done += len(frames)
    return done / elapsed, records


# ---------------------------------------------------------------------------- the wire


@dataclass
class WireStats:
    master_bytes: int = 0
    slave_bytes: int = 0
    answers: int = 0


class Wire:
    """A TCP relay with the throughput of a half-duplex serial line.

    Each chunk occupies the line for len x CHAR once the line is free, and each of its bytes is
    delivered when it would have arrived; the M-Bus master and slaves never talk at once, so one
    shared `free_at` models both directions.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stats = WireStats()
        self._free_at = 0.0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pump(reader, up_writer, master=True),
                             self._pump(up_reader, writer, master=False))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *,
                    master: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            while chunk := await source.read(4096):
                start = max(loop.time(), self._free_at)
                self._free_at = start + len(chunk) * CHAR
                if master:
                    self.stats.master_bytes += len(chunk)
                else:
                    self.stats.slave_bytes += len(chunk)
                    self.stats.answers += 1
                # Byte by byte, each when its stop bit would have arrived: the master sees an
                # answer start after one character, as on a real line.
                for i in range(len(chunk)):
                    await asyncio.sleep(start + (i + 1) * CHAR - loop.time())
                    sink.write(chunk[i:i + 1])
                await sink.drain()
        except ConnectionError:
            pass  # the other side went away: the sweep is over
        finally:
            sink.close()


# ----------------------------------------------------------------------------- read-out


def building(meters: int = 60) -> tuple[list[SimMeter], list[MBusDeviceConfig]]:
    sims: list[SimMeter] = []
    devices: list[MBusDeviceConfig] = []
    for address in range(1, meters + 1):
        ident = f"4{address:07d}"
        if address <= 42:  # water, the last 10 of them read by secondary address
            sims.append(WaterMeter(address, ident, "SAP", 0x15, 0x07, daily_litres=250,
                                   base_litres=10_000 * address))
        else:  # heat, the last 4 with a second telegram of 12 monthly indexes
            history = 12 if address > meters - 4 else 0
            sims.append(HeatMeter(address, ident, "KAM", 0x34, 0x04, base_wh=1e6 * address,
                                  history_months=history))
        where = {"secondary": ident} if 33 <= address <= 42 else {"address": address}
        devices.append(MBusDeviceConfig.model_validate(
            {"id": f"m{address}", "bus": "meters", "timeout": "500ms", **where}))
    return sims, devices


async def sweep(driver: MBusDriver, devices: list[MBusDeviceConfig], wire: Wire) -> tuple[
        float, float, int]:
    """(measured s, bus-time minimum s, values read) for one poll of every meter."""
    before = WireStats(wire.stats.master_bytes, wire.stats.slave_bytes, wire.stats.answers)
    values = 0
    started = time.perf_counter()
    for device in devices:
        values += len(await driver.poll(device))
    measured = time.perf_counter() - started
    chars = (wire.stats.master_bytes - before.master_bytes
             + wire.stats.slave_bytes - before.slave_bytes)
    minimum = chars * CHAR + (wire.stats.answers - before.answers) * TURNAROUND
    return measured, minimum, values


async def read_out() -> list[tuple[str, float, float, int]]:
    sims, devices = building()
    sim = MBusSimulator(sims, response_delay=TURNAROUND)
    wire = Wire(await sim.start())
    port = await wire.start()
    bus = MBusBusConfig.model_validate({"id": "meters", "driver": "mbus", "baudrate": BAUD,
                                        "port": f"socket://127.0.0.1:{port}"})
    rows = []
    try:
        async with MBusDriver(bus) as driver:
            for name in ("cold (resets, selects)", "warm"):
                rows.append((name, *await sweep(driver, devices, wire)))
            errors = driver.stats.timeouts + driver.stats.garbage
            if errors:
                print(f"warning: {errors} timeouts/garbage during the sweeps: {driver.stats}")
        await asyncio.sleep(0.05)  # let the relay and the simulator see the EOF
    finally:
        await wire.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await sim.stop()
    return rows


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="decode run time")
    args = parser.parse_args(argv)

    frames = load_frames()
    rate, records = decode_rate(frames, args.seconds)
    mean_size = sum(map(len, frames)) / len(frames)
    line_rate = 1 / (mean_size * CHAR)  # frames/s a 2400 baud line carries, back to back
    print("\nM-Bus (wired)")
    print(f"{'decode':34s} {rate:>10,.0f} frames/s  ({len(frames)} libmbus frames, {records} "
          f"records, mean {mean_size:.0f} B; {rate * records / len(frames):,.0f} records/s)")
    print(f"{'  vs a 2400 baud line':34s} {line_rate:>10.2f} frames/s  "
          f"-> decoding is {rate / line_rate:,.0f}x faster than the bus")

    rows = asyncio.run(read_out())
    print(f"\n{'read-out of 60 meters at 2400 8E1':34s} {'measured':>9s} {'bus minimum':>12s} "
          f"{'ratio':>6s} {'values':>7s}")
    for name, measured, minimum, values in rows:
        print(f"{'  ' + name:34s} {measured:>8.2f}s {minimum:>11.2f}s {measured / minimum:>6.3f} "
              f"{values:>7d}")


if __name__ == "__main__":
    main()
