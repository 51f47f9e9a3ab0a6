"""The simulated building's radio side: the dwellings' meters and when they transmit.

Every flat has a cold-water meter (Sappel/Diehl, T1-like, every `interval` s) — flat 103 leaks
6 l/h day and night, flat 104's meter falls silent after `silent_after` s (a flat battery) —,
two flats a heat meter (Kamstrup-like) and two radiators a heat cost allocator (Qundis-like),
plus a neighbour's meter that no config knows. All encrypted with OMS mode 5 and a per-meter key
(`keys_file()` writes them in the format `batigate wmbus keys` reads). The water and heat meters
bill a dwelling (`C-101`...) and send their set-day and two month-end values with their dates, so billing has last month's indexes from the first telegram heard.

`RadioAir.run()` plays the air: each meter transmits at its interval with a little jitter, with
an RSSI of its own that wanders by a few dB; some telegrams are heard twice (a repeater, or the
meter's own repeat) and a few collide (garbled, see `radio_stick`). The physics (volumes, flows,
energies) is the wired simulator's, so a radio meter counts exactly like a wired one.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.sim.wmbus_encoder import stripped
from drivers.mbus.sim_meters import HeatMeter, WaterMeter, _int_le, _month_start, _type_f, _type_g

Clock = Callable[[], float]


class Source(Protocol):
    ident: str
    manufacturer: str
    version: int
    medium: int

    def records(self, index: int, now: float) -> bytes: ...


@dataclass
class HeatCostAllocator:
    """EN 834 units accumulating with the radiator's use; the due-date index for the bill."""

    ident: str
    manufacturer: str = "QDS"
    version: int = 0x35
    medium: int = 0x08
    clock: Clock = time.time
    units_per_day: float = 12.0
    base_units: float = 1500.0
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def units(self, t: float) -> int:
        return int(self.base_units + self.units_per_day * max(0.0, t - self.started) / 86400)

    def records(self, index: int, now: float) -> bytes:
        del index
        due = _month_start(now)
        return b"".join((
            b"\x04\x6e" + _int_le(self.units(now), 4),  # HCA units, current
            b"\x04\x6d" + _type_f(now),
            b"\x44\x6e" + _int_le(self.units(due), 4),  # at the due date
            b"\x42\x6c" + _type_g(due),
        ))


@dataclass
class RadioMeter:
    name: str  # the device id the demo config gives it
    source: Any  # WaterMeter, HeatMeter or HeatCostAllocator
    key: bytes | None
    interval: float
    rssi: float  # dBm at the receiver
    profile: str = "water-meter"
    silent_after: float | None = None  # stops transmitting after this long (seconds)
    silent: bool = False
    configured: bool = True  # False: a neighbour's meter the gateway does not know
    dwelling: str | None = None  # billing: the landlord's lot reference, and what it counts
    medium: str | None = None
    access: int = field(default_factory=lambda: random.randrange(256))  # noqa: S311

    def telegram(self, now: float) -> bytes:
        self.access = (self.access + 1) & 0xFF
        src = self.source
        # A radio meter sends everything in one telegram: a wired meter's later telegrams (a
        # heat meter's stored values) follow its first, without the "more follows" 0x1F.
        count = src.telegram_count() if hasattr(src, "telegram_count") else 1
        parts = [src.records(i, now) for i in range(count)]
        data = b"".join([p[:-1] for p in parts[:-1]] + parts[-1:])
        return stripped(src.ident, src.manufacturer, src.version, src.medium, self.access,
                        data, key=self.key)


def _key(n: int) -> bytes:
    return bytes((0x42, n & 0xFF, *range(2, 16)))  # distinct, reproducible demo keys


def default_radio_meters(clock: Clock = time.time, interval: float = 16.0,
                         silent_after: float | None = 180.0, tz: str = "UTC") -> list[RadioMeter]:
    """The flats' meters; the water and heat meters keep the legal time of zone `tz` (their
    date records and the days they store their values on)."""
    meters = []
    for n, flat in enumerate((101, 102, 103, 104)):
        # Its set-day value and two month-end values, as OMS water meters send them.
        water = WaterMeter(0, f"4100{flat:04d}", "SAP", 0x15, 0x07, clock,
                           daily_litres=150 + 40 * n, base_litres=20_000 + 7_000 * n,
                           leak_lph=6.0 if flat == 103 else 0.0, history_months=3, past=True)
        meters.append(RadioMeter(f"flat-{flat}-water", water, _key(n), interval, -60.0 - 5 * n,
                                 silent_after=silent_after if flat == 104 else None,
                                 dwelling=f"C-{flat}", medium="cold_water"))
    for n, flat in enumerate((101, 102)):
        heat = HeatMeter(0, f"4200{flat:04d}", "KAM", 0x1B, 0x04, clock,
                         nominal_w=4000 + 1000 * n, base_wh=3_000_000 + 900_000 * n,
                         history_months=3, past=True)
        meters.append(RadioMeter(f"flat-{flat}-heat", heat, _key(10 + n), interval, -70.0 - 4 * n,
                                 profile="heat-meter", dwelling=f"C-{flat}", medium="heat"))
    for n, flat in enumerate((101, 102)):
        hca = HeatCostAllocator(f"4300{flat:04d}", clock=clock, units_per_day=10 + 4 * n)
        meters.append(RadioMeter(f"flat-{flat}-hca", hca, _key(20 + n), interval, -75.0 - 3 * n,
                                 profile="heat-cost-allocator"))
    for radio in meters:
        if isinstance(radio.source, WaterMeter | HeatMeter):
            radio.source.tz = tz
    neighbour = WaterMeter(0, "49990001", "ITW", 0x20, 0x07, clock, daily_litres=100)
    meters.append(RadioMeter("neighbour", neighbour, _key(99), interval * 2, -92.0,
                             configured=False))
    return meters


def keys_file(meters: Iterable[RadioMeter], path: Path) -> Path:
    """The gateway's keys file for these meters (mode 0600): `ID MANUFACTURER KEY` lines."""
    lines = [f"{m.source.ident} {m.source.manufacturer} {m.key.hex()}"
             for m in meters if m.key is not None and m.configured]
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def gateway_devices(meters: Iterable[RadioMeter], bus: str = "radio") -> list[dict[str, Any]]:
    return [{"id": m.name, "bus": bus, "address": m.source.ident, "profile": m.profile,
             "interval": f"{m.interval:g}s",
             **({"dwelling": m.dwelling} if m.dwelling else {}),
             **({"medium": m.medium} if m.medium else {})} for m in meters if m.configured]


class Emitter(Protocol):
    def broadcast(self, frame: bytes, rssi: float, garbled: bool = False) -> None: ...


class RadioAir:
    """Schedules the meters' transmissions and hands each telegram to every emulated stick."""

    def __init__(self, meters: list[RadioMeter], clock: Clock, *, repeat: float = 0.1,
                 collision: float = 0.03, seed: int | None = None) -> None:
        self.meters = meters
        self.clock = clock
        self.repeat = repeat
        self.collision = collision
        self.random = random.Random(seed)  # noqa: S311 - simulation, not crypto
        self.sticks: list[Emitter] = []
        self.sent = 0
        self.started = time.monotonic()

    def by_name(self, name: str) -> RadioMeter:
        for meter in self.meters:
            if meter.name == name:
                return meter
        raise KeyError(f"no radio meter {name!r}; the building has: "
                       f"{', '.join(m.name for m in self.meters)}")

    def transmit(self, meter: RadioMeter) -> None:
        if meter.silent or (meter.silent_after is not None
                            and time.monotonic() - self.started > meter.silent_after):
            return
        frame = meter.telegram(self.clock())
        rssi = meter.rssi + self.random.uniform(-3, 3)
        garbled = self.random.random() < self.collision
        for stick in self.sticks:
            stick.broadcast(frame, rssi, garbled)
            if not garbled and self.random.random() < self.repeat:
                stick.broadcast(frame, rssi - 6, False)  # heard again through a repeater
        self.sent += 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Meters do not start together: spread the first transmissions over one interval.
        due = [(now + self.random.uniform(0, m.interval), i) for i, m in enumerate(self.meters)]
        heapq.heapify(due)
        while due:
            when, index = heapq.heappop(due)
            delay = when - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            meter = self.meters[index]
            self.transmit(meter)
            jitter = self.random.uniform(-0.05, 0.05) * meter.interval
            heapq.heappush(due, (max(when + meter.interval + jitter, loop.time()), index))
