"""The simulated M-Bus meters: water and heat meters whose telegrams follow an injected clock.

The consumption profiles follow the UTC hour of the injected clock, so a test can jump the clock
to 03:00 and see the night flow. Dates and set days are in the meter's own zone (`tz`, UTC unless
given; a real meter keeps legal local time).

What a meter stores, as real ones do (`history_months` = n): storage 1 is its set-day value, the
index at the start of this month dated with that day (type G); storages 2..n are its month-end
values, the index at the start of each month before, dated with that day too, or with the
instant the meter froze it (type F date-time, `stamped`) as meters that keep a clock do. A stored
value is frozen once sent: what changes the meter's flow later never rewrites it. With `past`,
the count runs backwards along the profile before the meter was created (`started`), so a meter
built today already has last month's values, as a meter on the wall has.

The bus itself (frames, selection, collisions, the TCP server) is `drivers.mbus.simulator`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo

from drivers.mbus import frames

Clock = Callable[[], float]

# Residential hot/cold water use by UTC hour, relative weights: nothing at night, a morning
# and an evening peak.  A meter's daily volume is spread with these weights.
WATER_PROFILE: tuple[float, ...] = (
    0, 0, 0, 0, 0, 0.5, 3, 6, 5, 3, 2, 2,
    3, 2, 1.5, 1.5, 2, 3, 4, 6, 5, 3, 1.5, 0.5,
)
# Space-heating load by UTC hour, as a fraction of the nominal power: never zero in winter.
HEAT_PROFILE: tuple[float, ...] = (
    0.35, 0.3, 0.3, 0.3, 0.35, 0.5, 0.9, 1.0, 0.85, 0.6, 0.5, 0.45,
    0.4, 0.4, 0.4, 0.45, 0.55, 0.75, 0.9, 0.95, 0.85, 0.7, 0.55, 0.45,
)
WATER_HEAT_CAPACITY_WH_PER_M3K = 1163.0  # what a heat meter integrates: Q = 1.163 kWh/(m3.K)


def integrate_hourly(profile: Sequence[float], t0: float, t1: float) -> float:
    """Integral over [t0, t1] (epoch seconds) of a per-hour-of-day rate, in rate-units x hours.

    Closed form over whole days plus the partial hours at each end: no loop over elapsed time,
    so a test that jumps the clock by a year costs nothing.
    """
    day_total = sum(profile)

    def cumulative(t: float) -> float:
        hours = t / 3600.0
        days = math.floor(hours / 24.0)
        in_day = hours - days * 24.0
        hour = min(int(in_day), 23)
        return days * day_total + sum(profile[:hour]) + profile[hour] * (in_day - hour)

    return cumulative(t1) - cumulative(t0)


def hour_of_day(t: float) -> int:
    return int((t % 86400) // 3600)


# ------------------------------------------------------------------ record encoding


def _int_le(value: int, size: int) -> bytes:
    return int(value).to_bytes(size, "little", signed=True)


def _bcd(value: int, size: int) -> bytes:
    digits = f"{value:0{size * 2}d}"[-size * 2 :]
    return bytes.fromhex(digits)[::-1]


def _type_f(t: float, tz: tzinfo = timezone.utc) -> bytes:
    """Type F (CP32) date and time, minute resolution."""
    d = datetime.fromtimestamp(t, tz=tz)
    year = d.year % 100
    return bytes(
        (
            d.minute & 0x3F,
            d.hour & 0x1F,
            (d.day & 0x1F) | ((year & 0x07) << 5),
            (d.month & 0x0F) | ((year & 0x78) << 1),
        )
    )


def _type_g(t: float, tz: tzinfo = timezone.utc) -> bytes:
    d = datetime.fromtimestamp(t, tz=tz)
    year = d.year % 100
    return bytes(((d.day & 0x1F) | ((year & 0x07) << 5), (d.month & 0x0F) | ((year & 0x78) << 1)))


def _month_start(t: float, months_back: int = 0, tz: tzinfo = timezone.utc) -> float:
    d = datetime.fromtimestamp(t, tz=tz)
    index = d.year * 12 + (d.month - 1) - months_back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=tz).timestamp()


def _storage_dib(dif_data: int, storage: int) -> bytes:
    """DIF (+ DIFEs) for a storage number: bit 6 of the DIF, then four bits per DIFE."""
    dif = dif_data | ((storage & 1) << 6)
    rest = storage >> 1
    difes = []
    while rest:
        difes.append(rest & 0x0F)
        rest >>= 4
    if not difes:
        return bytes((dif,))
    out = bytearray((dif | 0x80,))
    for i, dife in enumerate(difes):
        out.append(dife | (0x80 if i < len(difes) - 1 else 0))
    return bytes(out)


# ------------------------------------------------------------------------- meters


@dataclass
class SimMeter:
    """One slave on the bus; subclasses provide the telegrams."""

    primary: int
    ident: str  # 8 BCD digits
    manufacturer: str
    version: int
    medium: int
    clock: Clock = time.time
    silent: bool = False
    garbage: bool = False
    selected: bool = False
    access_number: int = 0
    last_fcb: bool | None = None  # None after a link reset: the next REQ_UD2 is "new"
    telegram_index: int = 0
    started: float = field(default=0.0)
    sent: bytes | None = None  # the last RSP_UD, kept to repeat it unchanged on the same FCB
    tz: str = "UTC"  # the meter's legal time: its date records and set days
    stamped: bool = False  # month-end values dated with the instant frozen (type F), not a day
    frozen: dict[float, int] = field(default_factory=dict)  # stored values, by due instant
    # On the wall before `started`: the count runs back along the profile, so the stored values
    # of the months before differ (else the register reads its base before `started`).
    past: bool = False

    def __post_init__(self) -> None:
        frames.encode_id(self.ident)  # validate early
        self.started = self.clock()

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.tz)

    @property
    def secondary_address(self) -> bytes:
        return frames.secondary_address(self.ident, self.manufacturer, self.version, self.medium)

    def telegram_count(self) -> int:
        return 1

    def records(self, index: int, now: float) -> bytes:
        raise NotImplementedError

    def stored(self, now: float, months: int, vif: int, count: Callable[[float], float]) -> bytes:
        """Storage 1..months: the set-day value (this month's start, dated that day, type G) and
        the month-end values before it (each month's start, dated that day, or the instant it
        was frozen with a `stamped` meter, type F). A value is frozen the first time it is
        sent: what changes the flow afterwards never rewrites the meter's memory."""
        out = bytearray()
        for storage in range(1, months + 1):
            due = _month_start(now, storage - 1, self.zone)
            value = self.frozen.setdefault(due, int(count(due)))
            out += _storage_dib(0x04, storage) + bytes((vif,)) + _int_le(value, 4)
            if self.stamped and storage > 1:
                out += _storage_dib(0x04, storage) + b"\x6d" + _type_f(due, self.zone)
            else:
                out += _storage_dib(0x02, storage) + b"\x6c" + _type_g(due, self.zone)
        return bytes(out)

    def header(self) -> bytes:
        return (
            frames.encode_id(self.ident)
            + frames.encode_manufacturer(self.manufacturer).to_bytes(2, "little")
            + bytes((self.version, self.medium, self.access_number & 0xFF, 0x00, 0x00, 0x00))
        )

    def link_reset(self) -> None:
        self.last_fcb = None
        self.telegram_index = 0
        self.sent = None

    def respond_ud2(self, fcb: bool) -> bytes:
        """RSP_UD for a REQ_UD2, walking the telegrams on FCB toggles.

        A repeat (same FCB as the last REQ_UD2) is the master saying it missed the answer: the
        buffered telegram goes out again unchanged, not a fresh read-out under the old access
        number.
        """
        repeat = self.last_fcb is not None and fcb == self.last_fcb and self.sent is not None
        if not repeat:
            if self.last_fcb is not None:
                self.telegram_index = (self.telegram_index + 1) % self.telegram_count()
            else:
                self.telegram_index = 0
            self.access_number = (self.access_number + 1) & 0xFF
            data = self.header() + self.records(self.telegram_index, self.clock())
            self.sent = frames.rsp_ud(self.primary, 0x72, data)
        self.last_fcb = fcb
        assert self.sent is not None
        frame = bytearray(self.sent)
        if self.garbage:
            frame[-2] ^= 0x5A  # a checksum the master must reject
        return bytes(frame)


@dataclass
class WaterMeter(SimMeter):
    """Volume in litres following WATER_PROFILE; `leak_lph` adds a flow that never stops."""

    daily_litres: float = 300.0
    leak_lph: float = 0.0
    base_litres: float = 0.0
    history_months: int = 1  # storage 1: set-day value; 2..n: month-end values (see above)

    def rate_lph(self, t: float) -> float:
        weights = sum(WATER_PROFILE)
        return self.daily_litres * WATER_PROFILE[hour_of_day(t)] / weights + self.leak_lph

    def litres(self, t: float) -> float:
        weights = sum(WATER_PROFILE)
        profile = [self.daily_litres * w / weights + self.leak_lph for w in WATER_PROFILE]
        return _count(self.base_litres, profile, self.started, t, self.past)

    def records(self, index: int, now: float) -> bytes:
        stored = self.stored(now, self.history_months, 0x13, self.litres)  # litres
        return b"".join(
            (
                b"\x0c\x78" + _bcd(int(self.ident), 4),  # fabrication number
                b"\x04\x13" + _int_le(int(self.litres(now)), 4),  # volume, litres
                b"\x02\x3b" + _int_le(round(self.rate_lph(now)), 2),  # flow, l/h
                b"\x04\x6d" + _type_f(now, self.zone),
                bytes(stored),
                b"\x02\xfd\x17" + _int_le(0, 2),  # error flags
            )
        )


@dataclass
class HeatMeter(SimMeter):
    """A heat meter on a radiator circuit following HEAT_PROFILE.

    With `history_months` > 0 it answers in two telegrams: the first ends with DIF 0x1F and the
    second holds the monthly energy indexes (storage 1..n) and their dates.
    """

    nominal_w: float = 8000.0
    base_wh: float = 0.0
    base_litres: float = 0.0
    history_months: int = 0

    def _load(self, t: float) -> float:
        return HEAT_PROFILE[hour_of_day(t)]

    def temperatures(self, t: float) -> tuple[float, float]:
        load = self._load(t)
        flow = 55.0 + 15.0 * load
        return flow, flow - (5.0 + 15.0 * load)

    def power_w(self, t: float) -> float:
        return self.nominal_w * self._load(t)

    def flow_lph(self, t: float) -> float:
        flow, ret = self.temperatures(t)
        return 1000.0 * self.power_w(t) / (WATER_HEAT_CAPACITY_WH_PER_M3K * (flow - ret))

    def energy_wh(self, t: float) -> float:
        profile = [self.nominal_w * load for load in HEAT_PROFILE]
        return _count(self.base_wh, profile, self.started, t, self.past)

    def litres(self, t: float) -> float:
        hours = [3600.0 * h for h in range(24)]
        profile = [self.flow_lph(h) for h in hours]  # the flow is constant within an hour
        return _count(self.base_litres, profile, self.started, t, self.past)

    def telegram_count(self) -> int:
        return 2 if self.history_months > 0 else 1

    def records(self, index: int, now: float) -> bytes:
        if index == 1:
            return self._history(now)
        flow, ret = self.temperatures(now)
        body = b"".join(
            (
                b"\x0c\x78" + _bcd(int(self.ident), 4),
                b"\x04\x03" + _int_le(int(self.energy_wh(now)), 4),  # energy, Wh
                b"\x04\x13" + _int_le(int(self.litres(now)), 4),  # volume, litres
                b"\x04\x2b" + _int_le(round(self.power_w(now)), 4),  # power, W
                b"\x04\x3b" + _int_le(round(self.flow_lph(now)), 4),  # flow, l/h
                b"\x02\x59" + _int_le(round(flow * 100), 2),  # flow temperature, 0.01 degC
                b"\x02\x5d" + _int_le(round(ret * 100), 2),  # return temperature
                b"\x02\x61" + _int_le(round((flow - ret) * 100), 2),  # difference, 0.01 K
                b"\x04\x6d" + _type_f(now, self.zone),
            )
        )
        return body + (b"\x1f" if self.telegram_count() > 1 else b"")

    def _history(self, now: float) -> bytes:
        return self.stored(now, self.history_months, 0x03, self.energy_wh)  # Wh


def _count(base: float, profile: Sequence[float], started: float, t: float, past: bool) -> float:
    """A register that reads `base` at `started` and follows `profile` after (and before, with
    `past`; never below zero: a meter fitted new counted from nothing)."""
    return max(0.0, base + integrate_hourly(profile, started, t if past else max(t, started)))


def default_meters(clock: Clock = time.time, tz: str = "UTC") -> list[SimMeter]:
    """A small building: five water meters (one leaking) and three heat meters, keeping the
    legal time of zone `tz`."""
    meters: list[SimMeter] = [
        WaterMeter(1, "21000001", "SAP", 0x15, 0x07, clock, daily_litres=320, base_litres=152_340),
        WaterMeter(2, "21000002", "SAP", 0x15, 0x07, clock, daily_litres=180, base_litres=98_770),
        WaterMeter(3, "21000003", "SAP", 0x15, 0x06, clock, daily_litres=120, base_litres=41_005),
        WaterMeter(4, "21000004", "ITW", 0x20, 0x16, clock, daily_litres=250, leak_lph=6.0),
        WaterMeter(5, "21000015", "ITW", 0x20, 0x16, clock, daily_litres=90, base_litres=7_650),
        HeatMeter(10, "31000010", "KAM", 0x34, 0x04, clock, base_wh=18_450_000),
        HeatMeter(11, "31000011", "KAM", 0x34, 0x04, clock, nominal_w=6000, base_wh=9_120_000),
        HeatMeter(12, "31000012", "KAM", 0x34, 0x04, clock, base_wh=25_000_000, history_months=12),
    ]
    for meter in meters:
        meter.tz = tz
    return meters
