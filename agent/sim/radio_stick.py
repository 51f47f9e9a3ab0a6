"""Emulated radio receivers for the simulated building: an iM871A, an Amber AMB8465, or an SDR
decoder's hex lines, served on TCP (`socket://`) or on a pseudo-terminal (a real serial device
node, as the USB stick gives one).

Each behaves as its real counterpart does towards the host, as far as the gateway uses it:

- iM871A: answers PING_REQ, SET_CONFIG_REQ (status 0), RESET_REQ with their HCI responses (CRC
  attached); delivers telegrams only once configured, as WMBUSMSG_IND with RSSI and CRC, the L
  field dropped. After a reset it must be configured again.
- Amber: answers CMD_FWV_REQ, CMD_SET_MODE_REQ (status 0), CMD_RESET_REQ; delivers telegrams as
  CMD_DATA_IND with the RSSI byte appended (RSSI_Enable = 1).
- hex: one telegram per line with its format A CRCs (what rtl_wmbus prints), from the first
  byte on.

Faults: `go_silent()` (delivers nothing until the next reset: a hung stick), `dead = True`
(answers nothing either), `send_garbage(n)` (line noise), and collisions from the air: a garbled
telegram is a message whose bytes were hit on the serial side (HCI CRC / Amber checksum wrong) or,
for hex lines, a telegram whose link CRC fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tty
from collections.abc import Callable

from agent.sim.wmbus_encoder import format_a
from drivers.wmbus import amber, imst

Writer = Callable[[bytes], None]


def _raw_rssi(dbm: float) -> int:
    """dBm back to the CC1101 register the sticks report (the inverse of `radio.cc1101_dbm`)."""
    value = round((dbm + 74) * 2)
    return max(-128, min(127, value)) & 0xFF


class _Session:
    """One host connection: its command parser and whether it has configured the stick."""

    def __init__(self, write: Writer) -> None:
        self.write = write
        self.buffer = bytearray()
        self.configured = False


class EmulatedStick:
    def __init__(self, kind: str = "im871a", *, seed: int | None = None) -> None:
        if kind not in ("im871a", "amber", "hex"):
            raise ValueError(f"unknown emulated receiver {kind!r}: im871a, amber or hex")
        self.kind = kind
        self.sessions: list[_Session] = []
        self.silent = False
        self.dead = False
        self.resets = 0
        self.delivered = 0
        self.random = random.Random(seed)  # noqa: S311 - simulation
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pty: tuple[int, int] | None = None

    # -- faults --------------------------------------------------------------------------------

    def go_silent(self) -> None:
        self.silent = True

    def send_garbage(self, count: int = 64) -> None:
        noise = bytes(self.random.randrange(256) for _ in range(count))
        for session in self.sessions:
            session.write(noise)

    # -- the air ---------------------------------------------------------------------------------

    def broadcast(self, frame: bytes, rssi: float, garbled: bool = False) -> None:
        if self.silent or self.dead:
            return
        if garbled and self.kind == "hex":  # the SDR hears the bits hit: its link CRC fails
            hit = bytearray(frame)
            hit[self.random.randrange(11, len(hit))] ^= 0x10
            frame, garbled = bytes(hit), False
        message = self._message(frame, rssi)
        if garbled:
            hit = bytearray(message)
            for _ in range(3):
                hit[self.random.randrange(4, len(hit) - 1)] ^= 1 << self.random.randrange(8)
            message = bytes(hit)
        for session in self.sessions:
            if session.configured or self.kind == "hex":
                session.write(message)
                self.delivered += 1

    def _message(self, frame: bytes, rssi: float) -> bytes:
        if self.kind == "im871a":
            return imst.encode(imst.RADIOLINK, imst.WMBUSMSG_IND, frame[1:], rssi=_raw_rssi(rssi))
        if self.kind == "amber":
            return amber.telegram(frame[1:], _raw_rssi(rssi))
        return format_a(frame).hex().upper().encode() + b"\n"

    # -- the host --------------------------------------------------------------------------------

    def _received(self, session: _Session, data: bytes) -> None:
        if self.dead or self.kind == "hex":
            return
        session.buffer += data
        del session.buffer[:-1024]  # bounded: a host that sends junk cannot grow it
        if self.kind == "im871a":
            self._hci_commands(session)
        else:
            self._amber_commands(session)

    def _hci_commands(self, session: _Session) -> None:
        buf = session.buffer
        while len(buf) >= 4:
            if buf[0] != imst.SOF:
                del buf[:1]
                continue
            ctrl = buf[1] >> 4
            size = 4 + buf[3] + (2 if ctrl & imst.CTRL_CRC else 0)
            if len(buf) < size:
                return
            message = bytes(buf[:size])
            del buf[:size]
            if ctrl & imst.CTRL_CRC and imst.crc16_x25(message[1:-2]) != int.from_bytes(
                    message[-2:], "little"):
                continue  # a real stick ignores a corrupted command
            endpoint, kind = message[1] & 0x0F, message[2]
            if endpoint != imst.DEVMGMT:
                continue
            if kind == imst.PING_REQ:
                session.write(imst.encode(imst.DEVMGMT, imst.PING_RSP))
            elif kind == imst.SET_CONFIG_REQ:
                session.configured = True
                session.write(imst.encode(imst.DEVMGMT, imst.SET_CONFIG_RSP, b"\x00"))
            elif kind == imst.RESET_REQ:
                self._reset()
                session.write(imst.encode(imst.DEVMGMT, imst.RESET_RSP, b"\x00"))

    def _amber_commands(self, session: _Session) -> None:
        buf = session.buffer
        while len(buf) >= 4:
            if buf[0] != amber.START:
                del buf[:1]
                continue
            size = 4 + buf[2]
            if len(buf) < size:
                return
            frame = bytes(buf[:size])
            del buf[:size]
            if amber.checksum(frame[:-1]) != frame[-1]:
                continue
            command = frame[1]
            if command == amber.CMD_FWV_REQ:
                session.write(amber.encode(amber.RESPONSE | command, b"\x01\x05\x00\x00"))
            elif command == amber.CMD_SET_MODE_REQ:
                session.configured = True
                session.write(amber.encode(amber.RESPONSE | command, b"\x00"))
            elif command == amber.CMD_RESET_REQ:
                self._reset()
                session.write(amber.encode(amber.RESPONSE | command, b"\x00"))

    def _reset(self) -> None:
        self.resets += 1
        self.silent = False  # a reset revives a hung stick
        for session in self.sessions:
            session.configured = False

    # -- serving ---------------------------------------------------------------------------------

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer.write)
        self.sessions.append(session)
        self._writers.add(writer)
        try:
            while data := await reader.read(1024):
                self._received(session, data)
        except ConnectionError:
            pass
        finally:
            self.sessions.remove(session)
            self._writers.discard(writer)
            writer.close()

    def open_pty(self) -> str:
        """A pseudo-terminal: the driver opens the returned path as it opens /dev/ttyUSB0."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = (master, slave)

        def write(data: bytes) -> None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(master, data)  # a full pty (no reader) drops, as a stick's FIFO does

        session = _Session(write)
        self.sessions.append(session)

        def readable() -> None:
            try:
                data = os.read(master, 1024)
            except (BlockingIOError, OSError):
                return
            self._received(session, data)

        asyncio.get_running_loop().add_reader(master, readable)
        return os.ttyname(slave)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()  # the host sees the line drop, as when the stick is unplugged
            await self._server.wait_closed()
            self._server = None
        if self._pty is not None:
            master, slave = self._pty
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)
            self._pty = None
