"""The byte pipe to one M-Bus line and the request/answer exchange over it.

Two transports:
- a TCP stream for serial-over-TCP converters (`host`/`port`, `socket://HOST:PORT`) and the
  simulator: plain asyncio, no threads;
- pyserial for a local serial device (`/dev/ttyUSB1`, `rfc2217://...`): pyserial blocks, so each
  call runs in `asyncio.to_thread`, one at a time.

`MBusLink.transact` sends one frame and listens for one answer. The deadline follows the bus:
the request's own wire time, then `timeout` for the answer to start (EN 13757-2 allows 330 bit
times + 50 ms), then while bytes arrive the line may pause at most `timeout` between them, up to
the wire time of the longest frame. Bytes that form no valid frame (noise, collisions, broken
checksums) are counted as garbage; a silent line as a timeout. Retries belong to the caller,
who knows whether a repeat is safe (it is for REQ_UD2 with the same FCB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import serial

from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable
from drivers.mbus import frames
from drivers.mbus.config import MBusBusConfig

log = logging.getLogger(__name__)

MAX_FRAME = frames.MAX_LONG_DATA + 3 + 6  # 68 L L 68 C A CI data(252) CS 16
# What the link holds of unread input: a converter that pours bytes between two polls (a broken
# meter, a loop on the line) must not fill the memory. Only the newest bytes can be an answer, so
# the oldest go first; what is dropped is counted with the stale bytes.
MAX_HELD = 8 * MAX_FRAME
CONNECT_TIMEOUT = 5.0
_T = TypeVar("_T")


class Transport(Protocol):
    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def receive(self, deadline: float) -> bytes:
        """Bytes that arrived, waiting until `deadline` (loop time) at most; b"" if none."""
        ...

    async def discard(self) -> int:
        """Drop what is waiting in the input; returns how many bytes (approximately)."""
        ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------------------ TCP


class _Inbox(asyncio.Protocol):
    """Collects received bytes, the newest MAX_HELD at most; the exchange takes them at once."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrived = asyncio.Event()
        self.lost = False
        self.dropped = 0  # bytes thrown away because nobody read them in time

    def data_received(self, data: bytes) -> None:
        self.data += data[-MAX_HELD:]
        self.dropped += len(data) - min(len(data), MAX_HELD)
        if (excess := len(self.data) - MAX_HELD) > 0:
            del self.data[:excess]
            self.dropped += excess
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.arrived.set()


class StreamTransport:
    """A transparent serial-over-TCP converter (or the simulator)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._transport: asyncio.Transport | None = None
        self._inbox = _Inbox()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._inbox.lost

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            transport, inbox = await loop.create_connection(_Inbox, self.host, self.port)
        self._transport, self._inbox = transport, inbox

    async def send(self, data: bytes) -> None:
        if self._transport is None or self._inbox.lost:
            raise ConnectionError(f"not connected to {self.host}:{self.port}")
        self._transport.write(data)  # a few bytes: the socket buffer never pushes back

    async def receive(self, deadline: float) -> bytes:
        inbox = self._inbox
        while not inbox.data:
            if inbox.lost:
                raise ConnectionError(f"{self.host}:{self.port} closed the connection")
            inbox.arrived.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await inbox.arrived.wait()
            except TimeoutError:
                return b""
        chunk = bytes(inbox.data)
        inbox.data.clear()
        return chunk

    async def discard(self) -> int:
        count = len(self._inbox.data) + self._inbox.dropped
        self._inbox.data.clear()
        self._inbox.dropped = 0
        return count

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


# --------------------------------------------------------------------------- serial


class SerialTransport:
    """A local serial port through pyserial, every blocking call in `asyncio.to_thread`."""

    # pyserial waits at most this long per call, so a cancelled caller's thread ends soon and
    # the deadline of an exchange is kept to within this.
    SLICE = 0.05

    def __init__(self, url: str, *, baudrate: int, parity: str, stopbits: int,
                 bytesize: int) -> None:
        self.url = url
        self._settings = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits,
                          "bytesize": bytesize}
        self._port: serial.SerialBase | None = None
        self._busy: asyncio.Future[Any] | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    async def _call(self, func: Callable[..., _T], *args: Any) -> _T:
        # pyserial objects are not thread-safe: one call at a time, even when a cancelled caller
        # left its thread running.
        if self._busy is not None and not self._busy.done():
            await asyncio.wait([self._busy])
        future = asyncio.ensure_future(asyncio.to_thread(func, *args))
        # A cancelled caller never looks at the result: fetch it so it is not reported as lost.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._busy = future
        return await asyncio.shield(future)

    async def open(self) -> None:
        self._port = await self._call(self._open_port)

    def _open_port(self) -> serial.SerialBase:
        return serial.serial_for_url(self.url, timeout=self.SLICE, write_timeout=2.0,
                                     **self._settings)

    async def send(self, data: bytes) -> None:
        await self._call(self._write, data)

    def _write(self, data: bytes) -> None:
        port = self._require()
        port.write(data)
        port.flush()  # tcdrain: the answer timeout starts once the request has left

    async def receive(self, deadline: float) -> bytes:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            chunk = await self._call(self._read_some)
            if chunk:
                return chunk
        return b""

    def _read_some(self) -> bytes:
        port = self._require()
        first = port.read(1)  # blocks up to SLICE
        if not first:
            return b""
        out = bytearray(first)
        # Bounded: a line that never stops sending must not keep this thread reading forever.
        while (waiting := port.in_waiting) and len(out) < MAX_HELD:
            out += port.read(min(waiting, MAX_HELD - len(out)))
        return bytes(out)

    async def discard(self) -> int:
        return await self._call(self._discard)

    def _discard(self) -> int:
        port = self._require()
        waiting = int(port.in_waiting)
        port.reset_input_buffer()
        return waiting

    async def close(self) -> None:
        if self._port is not None:
            port, self._port = self._port, None
            await self._call(port.close)

    def _require(self) -> serial.SerialBase:
        if self._port is None:
            raise ConnectionError(f"{self.url} is not open")
        return self._port


# ---------------------------------------------------------------------------- link


@dataclass(frozen=True, slots=True)
class Answer:
    frame: bytes | None  # the first valid frame heard, None if none
    junk: int  # bytes heard that were no valid frame (noise, collision, broken frame)


def make_transport(bus: MBusBusConfig) -> Transport:
    end = bus.endpoint
    if end.host is not None and end.port is not None:
        return StreamTransport(end.host, end.port)
    assert end.url is not None  # the config gives one or the other
    return SerialTransport(end.url, baudrate=bus.baudrate, parity=bus.parity,
                           stopbits=bus.stopbits, bytesize=bus.bytesize)


class MBusLink:
    """One bus: opens lazily, reopens after a failure, counts what happens on the line."""

    def __init__(self, bus: MBusBusConfig, stats: BusStats,
                 transport: Transport | None = None) -> None:
        self.bus = bus
        self.stats = stats
        self.transport = transport if transport is not None else make_transport(bus)
        self.peer = str(bus.port) if bus.host is None else f"{bus.host}:{bus.port}"

    def wire_time(self, size: int) -> float:
        return size * self.bus.char_time

    async def open(self) -> None:
        if self.transport.is_open:
            return
        try:
            await self.transport.open()
        except (OSError, TimeoutError, serial.SerialException) as exc:
            await self.transport.close()
            why = str(exc) or "no connection within the timeout"
            raise DeviceUnavailable(f"cannot open {self.peer}: {why}") from None

    async def close(self) -> None:
        await self.transport.close()

    async def transact(self, request: bytes, timeout: float, settle: float = 0.0) -> Answer:
        """Send `request`, return the first valid frame heard (or None) and the junk around it.

        `settle` keeps listening that long after a frame, so that a collision's trailing bytes
        are seen (scans); polls leave it at 0 and return as soon as the frame is complete.
        Raises DeviceUnavailable when the line itself is gone (the next call reopens it).
        """
        await self.open()
        try:
            return await self._transact(request, timeout, settle)
        except (OSError, serial.SerialException) as exc:
            await self.transport.close()
            raise DeviceUnavailable(f"link to {self.peer} lost: {exc}") from None

    async def _transact(self, request: bytes, timeout: float, settle: float) -> Answer:
        loop = asyncio.get_running_loop()
        stale = await self.transport.discard()
        if stale:
            # A late answer to an earlier, timed-out request, or noise: never take it for ours.
            self.stats.extra["stale_bytes"] = self.stats.extra.get("stale_bytes", 0) + stale
        await self.transport.send(request)
        self.stats.requests += 1
        deadline = loop.time() + self.wire_time(len(request)) + timeout
        cap: float | None = None  # set by the first byte: the longest frame must fit by then
        settled: float | None = None
        buf = bytearray()
        junk = 0
        frame: bytes | None = None
        while True:
            chunk = await self.transport.receive(deadline)
            now = loop.time()
            if not chunk:
                if now >= deadline:
                    break
                continue
            if cap is None:
                cap = now + self.wire_time(MAX_FRAME) + timeout
            buf += chunk
            if frame is None:
                found = frames.extract_frame(buf)
                junk += found.garbage
                del buf[:found.consumed]
                frame = found.frame
                if frame is not None and settle <= 0:
                    break
            if len(buf) > MAX_HELD:  # only after a frame (settle): the rest is junk anyway
                junk += len(buf) - MAX_HELD
                del buf[:len(buf) - MAX_HELD]
            if frame is not None:
                settled = settled if settled is not None else now + settle
                deadline = settled
            else:
                # Within one answer the line only pauses briefly; a long pause ends it.
                deadline = min(now + timeout, cap)
        junk += len(buf)  # a frame cut short, or bytes after the frame: nobody's answer
        if frame is None and junk == 0:
            self.stats.timeouts += 1
        elif junk:
            self.stats.garbage += 1
        return Answer(frame, junk)
