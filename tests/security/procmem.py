"""Memory of a real process, read from /proc (Linux): what the tests bound."""

from __future__ import annotations


def _field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(name)


def rss(pid: int) -> int:
    """Resident set size now, bytes."""
    return _field(pid, "VmRSS")


def peak_rss(pid: int) -> int:
    """The highest resident set size the process ever had (VmHWM), bytes."""
    return _field(pid, "VmHWM")


def open_fds(pid: int) -> int:
    import os  # noqa: PLC0415

    return len(os.listdir(f"/proc/{pid}/fd"))
