"""Update downloads and bundles are bounded (issue #16, findings 6 and 13): a chunk header never
decides what is allocated, a trickling server is cut off, a bundle that unpacks to far more than
its size is refused before writing, and an older version needs allow_downgrade."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tarfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.lifecycle import update

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def http(handler: Handler) -> AsyncIterator[str]:
    """A raw HTTP server on 127.0.0.1 whose answer the test writes byte by byte."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/b.tgz"


async def test_a_huge_chunk_header_beyond_the_announced_size_ends_the_download_at_once(
        tmp_path: Path) -> None:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000\r\nabc")
        await writer.drain()
        await asyncio.sleep(30)  # and then nothing: a reader waiting for 256 MiB waits here

    async with http(answer) as url:
        started = time.monotonic()
        with pytest.raises(update.UpdateError, match="a chunk of 268435456 bytes"):
            async with asyncio.timeout(5):
                await update.fetch(url, tmp_path / "b", size=1000)
        assert time.monotonic() - started < 2


async def test_a_big_chunk_is_read_in_small_pieces(tmp_path: Path) -> None:
    """32 MiB announced in one chunk header, and sent: the reader never holds it whole."""
    body = os.urandom(1 << 20) * 32

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body))
        for i in range(0, len(body), 1 << 20):
            writer.write(body[i:i + (1 << 20)])
            await writer.drain()
        writer.write(b"\r\n0\r\n\r\n")
        await writer.drain()

    async with http(answer) as url:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            await update.fetch(url, tmp_path / "b", size=len(body))
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert (tmp_path / "b").stat().st_size == len(body)
    assert peak < 8 * 2**20, f"{peak} bytes held while downloading"


async def test_a_server_that_trickles_is_cut_off_by_the_overall_deadline(
        tmp_path: Path) -> None:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):  # one byte every half second: never stalled for STALL seconds
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.5)

    async with http(answer) as url:
        started = time.monotonic()
        with pytest.raises(update.UpdateError, match="took more than 2s"):
            await update.fetch(url, tmp_path / "b", size=100, within=2)
        assert time.monotonic() - started < 4


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


async def test_a_small_bundle_that_unpacks_to_300_mib_is_refused_before_writing(
        tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tgz"
    with tarfile.open(bomb, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("release/batigate-9.9.9-py3-none-any.whl")
        info.size = 300 * 2**20
        tar.addfile(info, io.BufferedReader(Zeros(info.size)))
    assert bomb.stat().st_size < 2 * 2**20  # about 1.3 MiB at level 1 (298 KiB at level 9)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(update.UpdateError, match="unpacks to more than"):
        await update.unpack(bomb, out)
    assert list(out.iterdir()) == []  # refused before a byte was written


def test_versions_order_as_pep_440_says() -> None:
    key = update.version_key
    assert key("1.0") == key("1.0.0") and key("0.9") < key("0.10") < key("1.0")
    assert key("1.0.dev1") < key("1.0a2") < key("1.0b1") < key("1.0rc1") < key("1.0rc10")
    assert key("1.0rc10") < key("1.0") < key("1.0.post1") < key("1.0-2") < key("1.0.1")
