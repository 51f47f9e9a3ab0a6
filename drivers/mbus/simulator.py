"""An M-Bus slave simulator: a bus of water and heat meters behind an asyncio TCP server.

Clients connect the way they would to a serial-over-TCP converter (pyserial
`serial_for_url("socket://127.0.0.1:PORT")` or an asyncio stream) and speak EN 13757-2 frames.
Every connection sees the same bus: the meters' selection and FCB state are shared.

What the meters do:
- SND_NKE: E5 and link reset (FCB state and multi-telegram position forgotten); to 0xFD it also
  deselects.  REQ_UD2: an RSP_UD long frame, CI 0x72, with values computed from the injected clock.
- FCB: a toggled FCB moves a multi-telegram meter to its next telegram; the same FCB again gets
  the buffered telegram again, byte for byte (same values, same access number), as EN 13757-2
  asks of a repeat: a head-end that de-duplicates on the access number loses nothing.
- SND_UD CI 0x52 to 0xFD selects by secondary address (id nibbles 0xF, manufacturer 0xFFFF,
  version/medium 0xFF are wildcards); a matching meter answers E5, the others deselect.
- Several meters answering at once collide: the replies are combined as the bus does (a space
  bit from any slave wins, i.e. bitwise AND), which garbles differing long frames.  Several meters
  may share one primary address (factory address 0 is common on real buses): their E5s survive
  the collision, their telegrams do not, so only secondary addressing reads them.
- Fault injection: `set_silent(addr, True)` (no answer at all), `inject_garbage(addr, True)`
  (RSP_UD with a corrupted checksum).

The consumption profiles follow the UTC hour of the injected clock, so a test can jump the clock
to 03:00 and see the night flow. Dates and set days are in the meter's own zone (`tz`, UTC unless
given; a real meter keeps legal local time): storage 1..n hold the index at the start of this
month and the months before, each with its date record (type G), as set-day meters do.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
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
    history_months: int = 1  # storage 1..n: the index at this month's start and the ones before

    def rate_lph(self, t: float) -> float:
        weights = sum(WATER_PROFILE)
        return self.daily_litres * WATER_PROFILE[hour_of_day(t)] / weights + self.leak_lph

    def litres(self, t: float) -> float:
        weights = sum(WATER_PROFILE)
        profile = [self.daily_litres * w / weights + self.leak_lph for w in WATER_PROFILE]
        return self.base_litres + integrate_hourly(profile, self.started, max(t, self.started))

    def records(self, index: int, now: float) -> bytes:
        stored = bytearray()
        for storage in range(1, self.history_months + 1):  # set-day indexes with their dates
            due = _month_start(now, storage - 1, self.zone)
            stored += _storage_dib(0x04, storage) + b"\x13" + _int_le(int(self.litres(due)), 4)
            stored += _storage_dib(0x02, storage) + b"\x6c" + _type_g(due, self.zone)
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
        return self.base_wh + integrate_hourly(profile, self.started, max(t, self.started))

    def litres(self, t: float) -> float:
        hours = [3600.0 * h for h in range(24)]
        profile = [self.flow_lph(h) for h in hours]  # the flow is constant within an hour
        return self.base_litres + integrate_hourly(profile, self.started, max(t, self.started))

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
        out = bytearray()
        for storage in range(1, self.history_months + 1):
            due = _month_start(now, storage - 1, self.zone)
            out += _storage_dib(0x04, storage) + b"\x03" + _int_le(int(self.energy_wh(due)), 4)
            out += _storage_dib(0x02, storage) + b"\x6c" + _type_g(due, self.zone)
        return bytes(out)


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


# ------------------------------------------------------------------------ the bus


def collide(replies: Sequence[bytes]) -> bytes:
    """What the master hears when several slaves answer at once.

    On M-Bus a slave signals a space (0) by drawing current, so any slave sending 0 wins: the
    bytes combine with AND, and the idle line (all ones) pads the shorter replies.
    """
    if len(replies) == 1:
        return replies[0]
    size = max(len(r) for r in replies)
    out = bytearray(b"\xff" * size)
    for reply in replies:
        for i, b in enumerate(reply):
            out[i] &= b
    return bytes(out)


class MBusSimulator:
    """The bus and its TCP front end."""

    def __init__(
        self,
        meters: Iterable[SimMeter] | None = None,
        clock: Clock = time.time,
        response_delay: float = 0.0,
    ) -> None:
        self.clock = clock
        # Every slave on the line, in wiring order; several may share a primary address.
        self.bus: list[SimMeter] = list(default_meters(clock) if meters is None else meters)
        idents = [m.secondary_address for m in self.bus]
        if len(set(idents)) != len(idents):
            raise ValueError("two meters with the same secondary address cannot be told apart")
        self.response_delay = response_delay  # seconds before each answer, for timing tests
        self.frames_in = 0
        self.port: int | None = None  # the bound TCP port once started
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def meters(self) -> dict[int, SimMeter]:
        """Primary address -> meter (the first one wired, where several share an address)."""
        out: dict[int, SimMeter] = {}
        for meter in self.bus:
            out.setdefault(meter.primary, meter)
        return out

    def at(self, address: int) -> list[SimMeter]:
        """Every meter configured to one primary address."""
        return [m for m in self.bus if m.primary == address]

    def replace(self, old: SimMeter, new: SimMeter) -> None:
        """A meter swapped for another on the same wires (a dwelling's meter replaced)."""
        self.bus[self.bus.index(old)] = new

    # -- fault injection (every meter at the address) ----------------------------

    def set_silent(self, address: int, silent: bool) -> None:
        for meter in self._at_least_one(address):
            meter.silent = silent

    def inject_garbage(self, address: int, garbage: bool) -> None:
        for meter in self._at_least_one(address):
            meter.garbage = garbage

    def _at_least_one(self, address: int) -> list[SimMeter]:
        found = self.at(address)
        if not found:
            raise KeyError(f"no simulated meter at primary address {address}")
        return found

    # -- protocol ----------------------------------------------------------------

    def _targets(self, address: int) -> list[SimMeter]:
        if address == frames.ADDR_NETWORK_LAYER:
            found = [m for m in self.bus if m.selected]
        elif address in (frames.ADDR_BROADCAST, frames.ADDR_BROADCAST_REPLY):
            found = list(self.bus)
        else:
            found = self.at(address)
        return [m for m in found if not m.silent]

    def handle(self, frame: bytes) -> bytes:
        """Answer one master frame: the bytes the master would read back (maybe none)."""
        self.frames_in += 1
        parsed = frames.parse_frame(frame)
        if isinstance(parsed, frames.ShortFrame):
            replies = self._short(parsed)
            quiet = parsed.a == frames.ADDR_BROADCAST
        elif isinstance(parsed, frames.LongFrame):
            replies = self._long(parsed)
            quiet = parsed.a == frames.ADDR_BROADCAST
        else:
            return b""  # an ACK from the master means nothing to a slave
        if quiet or not replies:
            return b""
        return collide(replies)

    def _short(self, frame: frames.ShortFrame) -> list[bytes]:
        c = frame.c
        if c == frames.C_SND_NKE:
            targets = self._targets(frame.a)
            for meter in targets:
                meter.link_reset()
                if frame.a == frames.ADDR_NETWORK_LAYER:
                    meter.selected = False
            return [bytes((frames.ACK,)) for _ in targets]
        if c & ~frames.FCB == frames.C_REQ_UD2:
            fcb = bool(c & frames.FCB)
            return [meter.respond_ud2(fcb) for meter in self._targets(frame.a)]
        return []  # REQ_UD1 and the rest: these meters have no alarm data

    def _long(self, frame: frames.LongFrame) -> list[bytes]:
        if frame.c & ~frames.FCB != frames.C_SND_UD:
            return []
        ack = bytes((frames.ACK,))
        if frame.a == frames.ADDR_NETWORK_LAYER and frame.ci == frames.CI_SELECT:
            if len(frame.data) != 8:
                return []
            replies = []
            for meter in self.bus:
                if meter.silent:
                    continue
                meter.selected = frames.secondary_matches(frame.data, meter.secondary_address)
                if meter.selected:
                    replies.append(ack)
            return replies
        targets = self._targets(frame.a)
        if frame.ci == frames.CI_APPLICATION_RESET:
            for meter in targets:
                meter.link_reset()
        return [ack for _ in targets]  # data sends are acknowledged and ignored

    # -- TCP ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = await reader.read(512)
                if not chunk:
                    return
                buf += chunk
                while True:
                    found = frames.extract_frame(buf)
                    del buf[: found.consumed]
                    if found.frame is None:
                        break  # noise dropped; wait for the rest of a frame
                    reply = self.handle(found.frame)
                    if reply:
                        if self.response_delay:
                            await asyncio.sleep(self.response_delay)
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the master went away mid-frame: nothing to clean up but the socket
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Track the connection so stop() can end it; a server close alone leaves it running.
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        await self._serve(reader, writer)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (pick a free one with port=0)."""
        self._server = await asyncio.start_server(self._client, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        self.port = None


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 2400,
    meters: Iterable[SimMeter] | None = None,
    clock: Clock = time.time,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Run a simulated bus until cancelled (for `batigate sim`); `ready` gets the port."""
    sim = MBusSimulator(meters, clock)
    bound = await sim.start(host, port)
    if ready is not None:
        ready(bound)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
