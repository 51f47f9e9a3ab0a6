"""Rows read straight from the pages of an SQLite file that SQLite itself refuses to open.

A truncated file or a rotted header makes every query fail, yet most table leaf pages are still
whole on the card. This reads them by the published file format (sqlite.org/fileformat2.html):
each page that is a table b-tree leaf (type 0x0D) gives its cells, each cell a rowid and a record
(serial types, big-endian values), overflow chains followed when they are intact. The WAL's
frames are read after the main file, so a newer copy of a page wins. Nothing here trusts a length
it has not checked against the bytes it has: a bad cell is skipped, never a crash.

Caveat: a page on the free list still looks like a leaf, so a row deleted long ago can come back;
the outbox publishes at least once and the backend de-duplicates on `mid`, so that is a duplicate,
not a loss.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_PAGE = 4096
LEAF_TABLE = 0x0D
WAL_HEADER, WAL_FRAME_HEADER = 32, 24
_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


class _Bad(Exception):
    """A cell or record that does not hold together."""


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        if at + i >= len(buf):
            raise _Bad("varint past the end")
        byte = buf[at + i]
        if i == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    raise _Bad("unreachable")


def _values(record: bytes) -> list[Any]:
    size, at = _varint(record, 0)
    if not 0 < size <= len(record):
        raise _Bad("record header size")
    types = []
    while at < size:
        kind, at = _varint(record, at)
        types.append(kind)
    out: list[Any] = []
    at = size
    for kind in types:
        if kind == 0:
            out.append(None)
        elif kind in _INT_SIZES:
            n = _INT_SIZES[kind]
            out.append(int.from_bytes(record[at:at + n], "big", signed=True))
            at += n
        elif kind == 7:
            out.append(struct.unpack(">d", record[at:at + 8])[0])
            at += 8
        elif kind in (8, 9):
            out.append(kind - 8)
        elif kind >= 12:
            n = (kind - 12) // 2
            raw = record[at:at + n]
            out.append(raw if kind % 2 == 0 else raw.decode("utf-8", errors="strict"))
            at += n
        else:
            raise _Bad("reserved serial type")
        if at > len(record):
            raise _Bad("value past the end of the record")
    return out


class PageFile:
    def __init__(self, data: bytes, page_size: int) -> None:
        self.data = data
        self.size = page_size
        self.pages = len(data) // page_size

    def page(self, number: int) -> bytes:
        if not 1 <= number <= self.pages:
            raise _Bad("page out of the file")
        return self.data[(number - 1) * self.size: number * self.size]


def _page_size(header: bytes) -> int:
    if header[:16] != b"SQLite format 3\x00":
        return DEFAULT_PAGE  # the header is gone: the agent only ever creates 4 KiB pages
    raw = int.from_bytes(header[16:18], "big")
    size = 65536 if raw == 1 else raw
    return size if size >= 512 and size & (size - 1) == 0 else DEFAULT_PAGE


def _cells(page: bytes, start: int, pages: PageFile) -> Iterator[tuple[int, list[Any]]]:
    usable = len(page)
    count = int.from_bytes(page[start + 3:start + 5], "big")
    for index in range(min(count, usable // 2)):
        try:
            pointer = int.from_bytes(page[start + 8 + 2 * index:start + 10 + 2 * index], "big")
            if not start + 8 <= pointer < usable:
                continue
            length, at = _varint(page, pointer)
            rowid, at = _varint(page, at)
            yield rowid, _values(_payload(page, at, length, usable, pages))
        except (_Bad, UnicodeDecodeError, struct.error):
            continue


def _payload(page: bytes, at: int, length: int, usable: int, pages: PageFile) -> bytes:
    limit = usable - 35
    if length <= limit:
        if at + length > len(page):
            raise _Bad("cell past the page")
        return page[at:at + length]
    small = ((usable - 12) * 32 // 255) - 23
    local = small + (length - small) % (usable - 4)
    if local > limit:
        local = small
    out = bytearray(page[at:at + local])
    following = int.from_bytes(page[at + local:at + local + 4], "big")
    for _ in range(pages.pages):  # a chain never has more links than the file has pages
        if len(out) >= length or following == 0:
            break
        overflow = pages.page(following)
        following = int.from_bytes(overflow[:4], "big")
        out += overflow[4:usable]
    if len(out) < length:
        raise _Bad("overflow chain cut")
    return bytes(out[:length])


def leaf_rows(path: Path) -> Iterator[tuple[int, list[Any]]]:
    """(rowid, values) of every readable table-leaf cell in `path`, then in its WAL frames."""
    data = path.read_bytes() if path.exists() else b""
    size = _page_size(data[:100])
    main = PageFile(data, size)
    for number in range(1, main.pages + 1):
        page = main.page(number)
        start = 100 if number == 1 else 0
        if page[start] == LEAF_TABLE:
            yield from _cells(page, start, main)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        frames = wal.read_bytes()[WAL_HEADER:]
        step = WAL_FRAME_HEADER + size
        for offset in range(0, len(frames) - step + 1, step):
            page = frames[offset + WAL_FRAME_HEADER:offset + step]
            number = int.from_bytes(frames[offset:offset + 4], "big")
            start = 100 if number == 1 else 0
            if page[start] == LEAF_TABLE:
                yield from _cells(page, start, main)
