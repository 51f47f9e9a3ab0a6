"""`WMBusDriver`: one radio receiver, the meters it hears. A push driver (`agent.sdk.driver`).

    listen():  open the line ─► configure the stick (ping/version, link modes, RSSI on)
               └─► read, frame (imst/amber/hexline) ─► reception.py ─► each meter's watcher
    nothing good heard for `silence` ─► reset the stick (command) and configure it again,
                                        or reopen the line (hex input); counted in `resets`
    line lost / stick not answering ─► reopen with backoff; counted in `reopens`

Counters (`health` → buses → ID): telegrams, accepted, duplicates, bad_crc, malformed,
undecryptable, unknown_meters, meter_clock_ignored, resets, reopens, garbage (bytes that were
no frame), requests/timeouts (commands to the stick and those it left unanswered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from agent.sdk.capabilities import Capabilities
from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.driver import BusStats, Hear
from agent.sdk.errors import DeviceUnavailable, DriverError, PointNotWritable
from agent.sdk.models import PointValue, Value
from drivers.wmbus import amber, imst
from drivers.wmbus.config import WMBusBusConfig, WMBusDeviceConfig, WMBusPointConfig
from drivers.wmbus.hexline import HexLines
from drivers.wmbus.radio import Answer, Garbage, Parser, Radio, Received, Stick
from drivers.wmbus.reception import Reception
from drivers.wmbus.scan import SCAN
from drivers.wmbus.transport import ByteStream, open_stream

log = logging.getLogger(__name__)

REOPEN_BACKOFF_CAP = 30.0
STATUS_OK = 0x00


class StickError(Exception):
    """The receiver did not answer a command, or refused it: the line is reopened."""


def stick_for(bus: WMBusBusConfig) -> Stick:
    if bus.receiver == "im871a":
        return imst.Im871a()
    if bus.receiver in ("amb8465", "amb3665"):
        return amber.Amber(bus.receiver, rssi=bus.rssi)
    return HexLines()


def load_keys(path: Any) -> Any:
    """The keys file (radio-decode's KeyStore), or None; an unreadable file is logged, and the
    bus runs without keys (encrypted telegrams are then counted as undecryptable)."""
    if path is None:
        return None
    from drivers.wmbus.keys import KeyStore  # noqa: PLC0415

    try:
        return KeyStore.load(path)
    except (OSError, ValueError) as exc:  # KeyFileError is a ValueError
        log.error("keys file %s cannot be used (%s): encrypted telegrams will not decrypt",
                  path, exc)
        return None


class WMBusDriver:
    push: ClassVar[bool] = True
    bus_model: ClassVar[type[BusConfig]] = WMBusBusConfig
    device_model: ClassVar[type[DeviceConfig]] = WMBusDeviceConfig
    point_model: ClassVar[type[PointConfig]] = WMBusPointConfig
    # A radio meter carries the same EN 13757-3 records as a wired one: the meter profiles
    # written for wired M-Bus serve radio meters too (points pick records the same way).
    capabilities: ClassVar[Capabilities] = Capabilities("wmbus", accepts=("mbus",), scan=SCAN)

    def __init__(self, bus: BusConfig, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(bus, WMBusBusConfig):
            raise DriverError(f"bus {bus.id}: expected a wmbus bus config, got {type(bus)}")
        self.bus = bus
        self.stats = BusStats(extra={"resets": 0, "reopens": 0, "receiving": 0})
        self.stick = stick_for(bus)
        self.monotonic = monotonic
        self.reception = Reception(self.stats, keys=load_keys(bus.keys),
                                   repeat_window=bus.repeat_window, clock=clock,
                                   monotonic=monotonic)
        self._last_good = monotonic()
        self._problem: str | None = None
        self.events: Callable[[dict[str, Any]], None] | None = None  # set by the field: `evt`

    async def __aenter__(self) -> Self:
        return self  # the line is opened by listen(): an absent stick must not stop the agent

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None

    # -- the push contract -------------------------------------------------------------------

    def attach(self, device: DeviceConfig, hear: Hear) -> None:
        self.reception.attach(self._meter(device), hear)

    def detach(self, device_id: str) -> None:
        self.reception.detach(device_id)

    def silence(self, device: DeviceConfig) -> float:
        return self._meter(device).silence

    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        raise DeviceUnavailable(f"{device.id}: radio meters are heard, not polled")

    async def write(self, device: DeviceConfig, point: PointConfig, value: Value) -> None:
        raise PointNotWritable(f"{device.id}/{point.name}: radio meters are read-only")

    async def listen(self) -> None:
        failures = 0
        while True:
            try:
                stream = await open_stream(self.bus.port, self.bus.command,
                                           self.bus.baudrate or self.stick.baudrate)
            except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
                failures += 1
                self._report(f"cannot open the receiver: {exc or 'timeout'}")
            else:
                try:
                    await self._session(stream)
                except (OSError, StickError) as exc:
                    failures = 1 if self.stats.extra["receiving"] else failures + 1
                    self.stats.extra["reopens"] += 1
                    self._report(f"receiver lost: {exc}")
                finally:
                    self.stats.extra["receiving"] = 0
                    await stream.close()
            await asyncio.sleep(min(REOPEN_BACKOFF_CAP, 0.5 * 2 ** min(failures, 6)))

    # -- one open line -----------------------------------------------------------------------

    async def _session(self, stream: ByteStream) -> None:
        parser = self.stick.parser()
        await self._configure(stream, parser)
        self.stats.extra["receiving"] = 1
        self._last_good = self.monotonic()
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + max(0.0, self._last_good + self.bus.silence
                                         - self.monotonic())
            try:
                async with asyncio.timeout_at(deadline):
                    data = await stream.read()
            except TimeoutError:
                await self._silent(stream, parser)
                continue
            for item in parser.feed(data):
                self._dispatch(item)

    async def _silent(self, stream: ByteStream, parser: Parser) -> None:
        self.stats.extra["resets"] += 1
        log.warning("bus %s: no telegram from the %s for %gs: resetting it (reset #%d)",
                    self.bus.id, self.stick.name, self.bus.silence, self.stats.extra["resets"])
        self._event("bus.reset", f"no telegram for {self.bus.silence:g}s",
                    resets=self.stats.extra["resets"])
        reset = self.stick.reset()
        if reset is None:
            raise StickError(f"silent for {self.bus.silence:g}s")
        await self._command(stream, parser, *reset)
        await self._configure(stream, parser)
        self._last_good = self.monotonic()

    async def _configure(self, stream: ByteStream, parser: Parser) -> None:
        for command, answer in self.stick.setup(tuple(self.bus.modes)):
            await self._command(stream, parser, command, answer)
        if self._problem is not None:
            log.info("bus %s: %s receiving again", self.bus.id, self.stick.name)
            self._problem = None
            self._event("bus.up", f"{self.stick.name} receiving again")

    async def _command(self, stream: ByteStream, parser: Parser, command: bytes,
                       expected: int) -> bytes:
        """Send one command and wait for its answer; telegrams arriving meanwhile are kept."""
        self.stats.requests += 1
        await stream.write(command)
        try:
            async with asyncio.timeout(self.bus.answer_timeout):
                while True:
                    for item in parser.feed(await stream.read()):
                        if isinstance(item, Answer) and item.kind == expected:
                            if _refused(item):
                                raise StickError(f"the {self.stick.name} refused command "
                                                 f"{command.hex()} (status {item.payload[0]})")
                            return item.payload
                        self._dispatch(item)
        except TimeoutError:
            self.stats.timeouts += 1
            raise StickError(f"the {self.stick.name} did not answer {command.hex()} within "
                             f"{self.bus.answer_timeout:g}s (wrong receiver type or baud "
                             "rate?)") from None

    def _dispatch(self, item: Received) -> None:
        if isinstance(item, Radio):
            self._last_good = self.monotonic()
            self.reception.receive(item)
        elif isinstance(item, Garbage):
            self.stats.garbage += item.count
        else:
            # An answer nobody asked for: a late one, or noise that happened to frame (without
            # a CRC to refuse it). Either way not a telegram: counted with the junk.
            self.stats.garbage += 4 + len(item.payload)

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            first = self._problem is None
            self._problem = problem
            log.warning("bus %s: %s", self.bus.id, problem)
            if first:  # once per outage, not once per retry
                self._event("bus.down", problem)

    def _event(self, kind: str, reason: str, **extra: Any) -> None:
        if self.events is not None:
            self.events({"type": kind, "bus": self.bus.id, "reason": reason, **extra})

    def _meter(self, device: DeviceConfig) -> WMBusDeviceConfig:
        if not isinstance(device, WMBusDeviceConfig):
            raise DriverError(f"device {device.id}: not configured for a wmbus bus")
        return device


def _refused(answer: Answer) -> bool:
    # SET_CONFIG_RSP (iM871A) and CMD_SET_MODE_RSP (Amber) carry a status byte, 0 = done.
    status_answers = (imst.ANSWER_SET_CONFIG, amber.RESPONSE | amber.CMD_SET_MODE_REQ)
    return answer.kind in status_answers and bool(answer.payload) and (
        answer.payload[0] != STATUS_OK)
