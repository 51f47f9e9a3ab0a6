"""The byte stream from one receiver: a serial device, a TCP socket, or a command's stdout.

- serial (`/dev/ttyUSB0`, a pseudo-terminal): pyserial opened non-blocking and read when the
  event loop says its descriptor is readable (`add_reader`): no thread, no polling;
- `socket://HOST:PORT`: an asyncio stream (serial-over-TCP converters, the emulated stick);
- `command:` a shell pipeline (`rtl_sdr ... | rtl_wmbus`) started in its own process group,
  killed with that group on close.

`read()` returns what has arrived (at most `CHUNK` bytes), raises `ConnectionError` at end of
stream; callers bound how long they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Protocol
from urllib.parse import urlsplit

import serial

CHUNK = 4096
CONNECT_TIMEOUT = 5.0


class ByteStream(Protocol):
    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class TcpStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        data = await self.reader.read(CHUNK)
        if not data:
            raise ConnectionError("the receiver closed the connection")
        return data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class SerialStream:
    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self._readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(port.fileno(), self._readable.set)

    async def read(self) -> bytes:
        while True:
            self._readable.clear()
            try:
                data = self.port.read(CHUNK)  # non-blocking: timeout=0
            except serial.SerialException as exc:  # unplugged: EOF-like
                raise ConnectionError(f"serial port: {exc}") from None
            if data:
                return data
            await self._readable.wait()

    async def write(self, data: bytes) -> None:
        try:
            self.port.write(data)  # a command of a few bytes fits the kernel's buffer
        except serial.SerialException as exc:
            raise ConnectionError(f"serial port: {exc}") from None

    async def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.port.fileno())
        self.port.close()


class CommandStream:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def read(self) -> bytes:
        assert self.process.stdout is not None
        data = await self.process.stdout.read(CHUNK)
        if not data:
            code = await self.process.wait()
            raise ConnectionError(f"the receiver command exited with status {code}")
        return data

    async def write(self, data: bytes) -> None:
        del data  # an SDR decoder takes no commands

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)  # the pipeline we started
            try:
                async with asyncio.timeout(3):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()


async def open_stream(port: str | None, command: str | None, baudrate: int) -> ByteStream:
    """Open what the bus names; OSError/ConnectionError/TimeoutError when it is not there."""
    if command is not None:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        return CommandStream(process)
    assert port is not None
    if port.startswith("socket://"):
        parts = urlsplit(port)
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return TcpStream(reader, writer)
    try:
        device = serial.serial_for_url(port, baudrate=baudrate, timeout=0, write_timeout=1)
    except serial.SerialException as exc:
        raise ConnectionError(f"{port}: {exc}") from None
    return SerialStream(device)
