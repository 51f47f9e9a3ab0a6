"""Is the wall clock real yet? Monotonic bookkeeping for a gateway without a real-time clock.

A Raspberry Pi boots at 1970 (or at the time fake-hwclock saved) and learns the real time from NTP
some seconds or hours later. The agent never waits for that: every message is stamped with the wall
clock *and* with the monotonic clock, which does not jump. While the clock is not synchronized the
outbox holds the messages back (flagged `uncertain`); when it becomes synchronized, the offset
`wall - monotonic` turns each held stamp into the real time at which the reading was taken:

    ts_real = mono_at_reading + (wall_now - mono_now)      (same boot only)

"Synchronized" is what the kernel says (adjtimex STA_UNSYNC, which covers chrony and timesyncd).
Many hosts never clear STA_UNSYNC although their clock is right (VMs, CI, ntpdate users), so a
wall clock later than `PLAUSIBLE_AFTER` also counts: a clock that reads 1970 is the case to catch.
A clock that is plausible but wrong (fake-hwclock) cannot be told apart from a right one; a jump of
it is detected and reported, and ordering and expiry never depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent.sdk.clock import Clock

log = logging.getLogger(__name__)

_TIME_ERROR = 5  # adjtimex(2) return value: "clock not synchronized"


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def kernel_clock_synced() -> bool | None:
    """Ask the kernel (adjtimex with modes = 0 only reads): False while NTP has not synchronized
    the clock, None where the call does not exist."""
    libc = _libc()
    if libc is None or not hasattr(libc, "adjtimex"):
        return None
    # struct timex is about 208 bytes on 64-bit Linux; a zeroed, larger buffer means modes = 0.
    buffer = ctypes.create_string_buffer(512)
    state = libc.adjtimex(buffer)
    if state < 0:
        return None
    return state != _TIME_ERROR


PLAUSIBLE_AFTER = 1735689600.0  # 2025-01-01T00:00:00Z: no reading of this software is older
JUMP_THRESHOLD = 2.0  # seconds of disagreement between the wall and monotonic clocks
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """Monotonic stamps are comparable only within one boot; this names the boot."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:  # not Linux: one boot per process is the safe assumption
        return f"process-{id(BOOT_ID)}"


@dataclass(frozen=True, slots=True)
class Stamp:
    wall: float  # what the wall clock said (may be 1970)
    mono: float  # the monotonic clock at the same instant
    synced: bool


class TimeKeeper:
    """Answers `synced()` and watches for the moment the clock becomes real or jumps.

    The clock is injectable: a test clock that has a `synced()` method replaces the kernel probe,
    so the tests drive "boot at 1970, NTP arrives" without touching the host's clock.
    """

    def __init__(self, clock: Clock, *, probe: Callable[[], bool | None] | None = None) -> None:
        self.clock = clock
        own = getattr(clock, "synced", None)
        self._probe = probe or (own if callable(own) else kernel_clock_synced)
        self.boot = boot_id()
        self.jumps = 0
        self.last_jump = 0.0
        self._synced = self._ask()
        self._offset = clock.time() - clock.monotonic()

    def _ask(self) -> bool:
        kernel = self._probe()
        return bool(kernel) or self.clock.time() >= PLAUSIBLE_AFTER

    def synced(self) -> bool:
        return self._synced

    def stamp(self) -> Stamp:
        return Stamp(self.clock.time(), self.clock.monotonic(), self._synced)

    def offset(self) -> float:
        """wall - monotonic, as of the last check: turns a monotonic stamp into wall time."""
        return self._offset

    def mono_of(self, wall: float) -> float:
        """The monotonic instant of a wall stamp taken a moment ago (the poller stamps a reading,
        the outbox gets it microseconds later)."""
        return self.clock.monotonic() - (self.clock.time() - wall)

    def check(self) -> tuple[bool, float | None]:
        """Probe once. Returns (became_synced, jump): `became_synced` when the clock just turned
        real; `jump` in seconds when the wall clock moved against the monotonic one."""
        offset = self.clock.time() - self.clock.monotonic()
        jump = offset - self._offset
        self._offset = offset
        was = self._synced
        self._synced = self._ask()
        moved = jump if abs(jump) >= JUMP_THRESHOLD else None
        if moved is not None:
            self.jumps += 1
            self.last_jump = moved
            log.warning("the wall clock jumped by %+.1fs (synchronized: %s)", moved, self._synced)
        return (self._synced and not was), moved

    async def watch(self, on_synced: Callable[[float], None],
                    on_jump: Callable[[float], None], *, every: float = 1.0) -> None:
        """Check once a second; call `on_synced(offset)` at the transition, `on_jump(delta)`."""
        while True:
            await asyncio.sleep(every)
            became, jump = self.check()
            if jump is not None:
                on_jump(jump)
            if became:
                log.info("the clock is synchronized: correcting held timestamps")
                on_synced(self._offset)
