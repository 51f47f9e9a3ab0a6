"""sd_notify(3) without libsystemd: READY=1, WATCHDOG=1 and STATUS= as datagrams to $NOTIFY_SOCKET.

systemd starts a `Type=notify` service with `NOTIFY_SOCKET` (a path, or `@name` for an abstract
socket) and, when `WatchdogSec=` is set, `WATCHDOG_USEC` (+ `WATCHDOG_PID`). Outside systemd none
of them exists and every call here does nothing, so the agent runs the same on a laptop.

The watchdog is fed from a coroutine of the agent's own event loop, never from a thread: a loop
blocked by a stuck call stops the pings, and systemd kills and restarts the agent, which is the
point of the watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """One unix datagram socket towards the service manager; a no-op when there is none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        # '@name' is Linux's abstract namespace: the kernel wants a leading NUL byte instead.
        self.address: str | None = ("\0" + raw[1:]) if raw.startswith("@") else (raw or None)
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines (keys upper-cased); True when the datagram went out."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload.encode(), self.address)
        except OSError as exc:  # systemd gone or socket not reachable: never worth a crash
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        if status is None:
            return self.send(ready=1)
        return self.send(ready=1, status=status)

    def status(self, text: str) -> bool:
        return self.send(status=text)

    def stopping(self) -> bool:
        return self.send(stopping=1)

    async def feed_watchdog(self) -> None:
        """Ping at half the WatchdogSec= interval (sd_watchdog_enabled(3) advice) until cancelled;
        returns at once when no watchdog is asked for."""
        if self.watchdog_interval is None or not self.enabled:
            return
        period = self.watchdog_interval / 2
        while True:
            self.send(watchdog=1)
            await asyncio.sleep(period)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """WatchdogSec= in seconds when it is meant for this process, else None."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    # A watchdog set up for our parent (a wrapper script) is not ours to feed.
    if pid and pid != str(os.getpid()):
        return None
    return usec / 1_000_000 if usec > 0 else None


def ready(status: str) -> bool:
    """READY=1 with a status line for `systemctl status`, from the process environment."""
    return Notifier().ready(status)


async def watchdog() -> None:
    """The supervisor's watchdog task: feeds WatchdogSec= from the event loop until cancelled."""
    await Notifier().feed_watchdog()
