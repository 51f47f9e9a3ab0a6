"""Files that survive a power cut whole: the old content or the new one, never half of either.

A gateway loses power without warning; its config, certificates, release links and the notes of
a pending apply or update are all written this way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, mode: int = 0o640, *,
                 owner: tuple[int, int] | None = None) -> None:
    """Temp file created with its final mode and owner (a key is never readable by others, even
    for a moment), fsync, rename over `path`, fsync of the directory so the rename itself is
    durable. `owner` is (uid, gid), -1 keeping either."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # the umask may have taken bits off
        if owner is not None:
            os.fchown(out.fileno(), *owner)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_note(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, None when there is none. An unreadable one (not JSON, not an
    object) is removed and reads as none: half-understood state must not steer anything."""
    try:
        body = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        path.unlink(missing_ok=True)
        return None
    return body


PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def private_sqlite(path: Path) -> None:
    """Make `path` (an SQLite database) owner-only whatever the umask, before SQLite opens it.

    SQLite creates the -wal and -shm files with the mode of the database file, so creating the
    database 0600 first covers all three; sidecars left 0644 by an earlier version are tightened.
    A new parent directory is created 0700 (an existing one is left alone: it may be shared)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the umask cannot widen it, an old file is tightened
    finally:
        os.close(fd)
    for suffix in SQLITE_SIDECARS:
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, PRIVATE_FILE)
