"""The access token of the local page and API: a random secret in a file only the agent reads.

Created with mode 0600 (atomically: O_CREAT|O_EXCL with the mode, so it is never wider, even for
a moment). A file others can read is refused rather than used: its token may be known.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

MODE = 0o600


class TokenFileError(OSError):
    pass


def load_or_create(path: Path) -> str:
    path = Path(path)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    except FileExistsError:  # another process created it first: use theirs
        return _read(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _read(path: Path) -> str:
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise TokenFileError(f"{path} has mode {stat.S_IMODE(info.st_mode):o}: others may have "
                             f"read the token; `chmod 600 {path}` or delete it for a new one")
    token = path.read_text(encoding="utf-8", errors="replace").strip()
    if len(token) < 16:
        raise TokenFileError(f"{path}: the token is shorter than 16 characters; delete the file "
                             "for a new one")
    return token
