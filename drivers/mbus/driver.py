"""`MBusDriver`: reads the meters of one wired M-Bus line as its master.

One poll of one meter, as the poller asks for it (one at a time, under the bus lock):

    [secondary]  SND_UD select (CI 0x52) to 0xFD          -> E5
    [first poll, or after a failure]
                 SND_NKE to the meter (0xFD: reset, then select again) -> E5
    REQ_UD2 FCB=f  -> RSP_UD telegram 1 (... DIF 0x1F: more records follow)
    REQ_UD2 FCB=!f -> RSP_UD telegram 2 ...            up to `max_telegrams`

The FCB toggles after every good exchange and is kept between polls (the meter expects it);
a repeat after a timeout or a garbled answer keeps the same FCB, so the meter sends the same
telegram again instead of skipping one. Anything that leaves the meter's telegram sequence in
doubt (a failure, a read-out cut at `max_telegrams`) makes the next poll start with SND_NKE.

Records become point values in mapping.py; values are already in SenML units.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from agent.sdk.capabilities import Capabilities, Question, whole
from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable, DriverError, PointNotWritable
from agent.sdk.models import PointValue, Value
from drivers.mbus import frames, mapping
from drivers.mbus.codec import CI_APPLICATION_ERROR, MBusDecodeError, Record, decode_frame
from drivers.mbus.config import MBusBusConfig, MBusDeviceConfig, MBusPointConfig
from drivers.mbus.link import MBusLink
from drivers.mbus.scan import SCAN

log = logging.getLogger(__name__)


class NoAnswer(Exception):  # noqa: N818 - a fact about the meter, turned into DeviceUnavailable
    """The meter gave no usable answer to a request, retries included."""


@dataclass(slots=True)
class MeterLink:
    """What the master remembers about one meter's link layer between polls."""

    fcb: bool = True  # the FCB of the next REQ_UD2 (EN 13757-2: 1 first after SND_NKE)
    needs_reset: bool = True  # SND_NKE before the next read-out


@dataclass(slots=True)
class ReadOut:
    records: list[Record]
    telegrams: int
    complete: bool  # False when the meter announced more records than were read


class MBusDriver:
    bus_model: ClassVar[type[BusConfig]] = MBusBusConfig
    device_model: ClassVar[type[DeviceConfig]] = MBusDeviceConfig
    point_model: ClassVar[type[PointConfig]] = MBusPointConfig
    # `batigate init` asks for the line (a serial port or a TCP converter); `batigate scan mbus`.
    capabilities: ClassVar[Capabilities] = Capabilities(
        "mbus", questions=(Question("port", "init.ask.serial", "/dev/ttyUSB0"),
                           Question("baudrate", "init.ask.baudrate", 2400, whole)), scan=SCAN)

    def __init__(self, bus: BusConfig) -> None:
        if not isinstance(bus, MBusBusConfig):
            raise DriverError(f"bus {bus.id}: expected an M-Bus bus config, got {type(bus)}")
        self.bus = bus
        self.stats = BusStats()
        self.link = MBusLink(bus, self.stats)
        # Keyed by how the meter is reached on the bus: the FCB belongs to the meter, not to a
        # config entry (and survives a renamed device).
        self._meters: dict[tuple[int | None, bytes | None], MeterLink] = {}
        self._reported: dict[str, str] = {}  # last problem logged per meter, to log changes only

    async def __aenter__(self) -> Self:
        # No connection yet: an absent converter must not stop the agent; poll() opens it.
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.link.close()

    def meter(self, device: MBusDeviceConfig) -> MeterLink:
        return self._meters.setdefault((device.address, device.selection()), MeterLink())

    # -- the contract --------------------------------------------------------------------------

    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        meter = self._mbus_device(device)
        state = self.meter(meter)
        finished = False
        try:
            readout = await self.read_out(meter, state)
            finished = True
        except NoAnswer as exc:
            raise DeviceUnavailable(f"{meter.id}: {exc}") from None
        finally:
            if not finished:
                # Failed, or cancelled by the poller's ceiling mid-exchange: the meter's FCB and
                # telegram position are unknown, so the next poll resets the link first.
                state.needs_reset = True
        if not meter.points:
            return mapping.auto(readout.records)
        return mapping.pick(meter.points, readout.records)

    async def write(self, device: DeviceConfig, point: PointConfig, value: Value) -> None:
        raise PointNotWritable(f"{device.id}/{point.name}: M-Bus meters are read-only here")

    # -- one read-out --------------------------------------------------------------------------

    async def read_out(self, meter: MBusDeviceConfig, state: MeterLink) -> ReadOut:
        """Select (secondary), reset if needed, then every telegram up to `max_telegrams`."""
        selection = meter.selection()
        if selection is not None:
            await self._expect_ack(selection, meter, "select")
        if state.needs_reset:
            await self._expect_ack(frames.snd_nke(meter.link_address), meter, "SND_NKE")
            if selection is not None:
                # SND_NKE to 0xFD also deselects: select again.
                await self._expect_ack(selection, meter, "select")
            state.fcb = True
            state.needs_reset = False
        records: list[Record] = []
        for count in range(1, self.bus.max_telegrams + 1):
            try:
                frame = await self._expect_telegram(meter, state.fcb)
            except NoAnswer as exc:
                if count == 1:
                    raise
                # Part of the read-out came: publish it; the missing points go BAD.
                self._report(meter, f"telegram {count} missing: {exc}")
                state.needs_reset = True
                return ReadOut(records, count - 1, complete=False)
            state.fcb = not state.fcb  # the exchange succeeded: the next one is new
            try:
                telegram = decode_frame(frame)
            except MBusDecodeError as exc:
                self._undecodable(meter, state, frame, exc)
                return ReadOut(records, count, complete=False)
            records.extend(telegram.records)
            if not telegram.more_records_follow:
                self._reported.pop(meter.id, None)
                return ReadOut(records, count, complete=True)
        # The meter still has more: it would continue mid-sequence on the next poll.
        self._report(meter, f"more than max_telegrams={self.bus.max_telegrams} telegrams")
        state.needs_reset = True
        return ReadOut(records, self.bus.max_telegrams, complete=False)

    def _undecodable(self, meter: MBusDeviceConfig, state: MeterLink, frame: bytes,
                     exc: MBusDecodeError) -> None:
        # The link layer was fine (checksum good), so the meter is there: its points go BAD,
        # the device stays up. CI 0x70 is the meter's own "application error".
        if len(frame) > 6 and frame[0] == frames.START_LONG and frame[6] == CI_APPLICATION_ERROR:
            self.stats.exceptions += 1
        else:
            self.stats.garbage += 1
        state.needs_reset = True
        self._report(meter, str(exc))

    async def _expect_ack(self, request: bytes, meter: MBusDeviceConfig, what: str) -> None:
        await self._exchange(request, meter, what, want_ack=True)

    async def _expect_telegram(self, meter: MBusDeviceConfig, fcb: bool) -> bytes:
        return await self._exchange(frames.req_ud2(meter.link_address, fcb), meter, "REQ_UD2",
                                    want_ack=False)

    async def _exchange(self, request: bytes, meter: MBusDeviceConfig, what: str, *,
                        want_ack: bool) -> bytes:
        """The request, repeated unchanged up to `retries` times until the right answer comes."""
        problem = "no answer"
        for _ in range(self.bus.retries + 1):
            answer = await self.link.transact(request, meter.timeout)
            if answer.frame is None:
                problem = (f"{answer.junk} garbled bytes, no valid frame (collision, noise, "
                           "wrong baud rate?)" if answer.junk else
                           f"no answer within {meter.timeout:g}s")
                continue
            wrong = self._wrong_answer(answer.frame, meter, want_ack)
            if wrong is None:
                return answer.frame
            self.stats.garbage += 1
            problem = wrong
        tries = self.bus.retries + 1
        raise NoAnswer(f"{what}: {problem} ({tries} {'try' if tries == 1 else 'tries'})")

    @staticmethod
    def _wrong_answer(frame: bytes, meter: MBusDeviceConfig, want_ack: bool) -> str | None:
        if want_ack:
            return None if frame[0] == frames.ACK else "answer is not the E5 acknowledgement"
        if frame[0] != frames.START_LONG:
            return "answer is not an RSP_UD long frame"
        c, a = frame[4], frame[5]
        if c & frames.C_RSP_MASK != frames.C_RSP_UD:
            return f"C field 0x{c:02X} is not RSP_UD"
        if meter.address is not None and a != meter.address:
            # An answer from another meter (a late one, or a duplicated address).
            return f"answer from address {a}, not {meter.address}"
        return None

    # -- helpers -------------------------------------------------------------------------------

    def _mbus_device(self, device: DeviceConfig) -> MBusDeviceConfig:
        if not isinstance(device, MBusDeviceConfig):
            raise DriverError(f"device {device.id}: not configured for an M-Bus bus")
        return device

    def _report(self, meter: MBusDeviceConfig, problem: str) -> None:
        # A meter that answers but with a problem stays "ok" for the poller: log each new
        # problem once, not once per poll on the SD card.
        if self._reported.get(meter.id) != problem:
            self._reported[meter.id] = problem
            log.warning("meter %s: %s", meter.id, problem)
