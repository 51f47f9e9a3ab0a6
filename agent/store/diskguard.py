"""The storage side of the outbox that is not SQL: which errors mean "the disk is unusable for
now" (keep running from memory) and how many bytes the agent makes the SD card write.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

# SQLite primary result codes (the low byte of sqlite_errorcode) that a full, read-only, removed or
# failing medium produces. They are conditions of the machine, not bugs: the agent keeps running.
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_READONLY = 8
_SQLITE_BUSY = 5
_MEDIUM_CODES = {_SQLITE_IOERR: "disk I/O error", _SQLITE_FULL: "disk full",
                 _SQLITE_CANTOPEN: "cannot open the database", _SQLITE_READONLY: "read-only",
                 _SQLITE_BUSY: "database busy"}

PROC_IO = Path("/proc/self/io")
# Below this much free space SQLite cannot even open a WAL database the usual way: the first
# reader must grow the -shm wal-index to 32 KiB, and on a full disk that fails as an I/O error.
STARVED_BYTES = 64 * 1024


def medium_fault(exc: sqlite3.Error) -> str | None:
    """A short reason when `exc` says the medium is unusable right now, else None (a real bug or
    a corrupt file, which must not be hidden)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc).lower()  # sqlite3 without error codes: match the messages SQLite uses
        for needle, reason in (("disk is full", "disk full"), ("readonly", "read-only"),
                               ("disk i/o", "disk I/O error"), ("unable to open", "cannot open")):
            if needle in text:
                return reason
        return None
    return _MEDIUM_CODES.get(code & 0xFF)


def starved(path: Path) -> bool:
    """The file system that holds (or will hold) `path` has almost no space left for this
    process (root may use the reserved blocks, others may not)."""
    try:
        fs = os.statvfs(path.parent if path.parent.exists() else Path.cwd())
    except OSError:
        return False
    free = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
    return free * fs.f_frsize < STARVED_BYTES


def process_write_bytes() -> int | None:
    """Bytes this process caused to be written to storage (Linux /proc/self/io `write_bytes`:
    page-cache bytes dirtied, 4 KiB granularity, the file system's own journal not included).
    None where the kernel does not say."""
    try:
        for line in PROC_IO.read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class WearMeter:
    """Bytes written per 1,000 readings since the outbox opened: the SD wear figure in `health`."""

    def __init__(self) -> None:
        self._start = process_write_bytes()
        self.readings = 0

    def per_1000(self) -> float | None:
        now = process_write_bytes()
        if now is None or self._start is None or self.readings == 0:
            return None
        return round((now - self._start) * 1000 / self.readings, 1)

    def written(self) -> int | None:
        now = process_write_bytes()
        return None if now is None or self._start is None else now - self._start
