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

The meters themselves (what they count, store and send) are in `drivers.mbus.sim_meters`; their
names are importable from here too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

from drivers.mbus import frames
from drivers.mbus.sim_meters import (HEAT_PROFILE, WATER_PROFILE, Clock, HeatMeter, SimMeter,
                                     WaterMeter, default_meters, integrate_hourly)

__all__ = ["HEAT_PROFILE", "WATER_PROFILE", "Clock", "HeatMeter", "MBusSimulator", "SimMeter",
           "WaterMeter", "collide", "default_meters", "integrate_hourly", "serve_forever"]

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
