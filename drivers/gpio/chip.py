"""The small interface the GPIO driver needs from a chip, its gpiod 2.x implementation, a fake.

    Chip.request(consumer, {line: LineSettings}) -> LineRequest
    LineRequest.values() -> {line: active?}      levels now (edges only report changes)
    LineRequest.read_edges() -> [Edge]           pending edge events, never blocks
    LineRequest.fileno() -> int                  readable while edge events are pending
    LineRequest.release()

Levels and edges are *logical*: `active_low` is applied by the kernel (and by the fake), so a
rising edge means "became active". Edge times are CLOCK_MONOTONIC seconds, the kernel's default
event clock, which is also what `time.monotonic()` reads on Linux.

The kernel keeps the edges of each request in a buffer between two reads; when the buffer is
full it drops the oldest and the per-line sequence numbers show a gap. `FakeChip` does the same,
without any debouncing of its own (the worst case: a chip whose kernel cannot debounce).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

# The kernel caps a request's event buffer at 16 events x 64 lines; ask for the cap so that a
# slow poll period loses nothing short of a storm.
EVENT_BUFFER = 1024


@dataclass(frozen=True, slots=True)
class LineSettings:
    active_low: bool = False
    bias: str = "as-is"  # as-is | disabled | pull-up | pull-down
    debounce: float = 0.0  # seconds; the kernel debounces in hardware or software (uAPI v2)


@dataclass(frozen=True, slots=True)
class Edge:
    line: int
    active: bool  # the line became active (logical rising edge)
    t: float  # CLOCK_MONOTONIC seconds
    seqno: int  # per-line sequence number, from 1; a gap means the kernel dropped events


class LineRequest(Protocol):
    def values(self) -> dict[int, bool]: ...

    def read_edges(self) -> list[Edge]: ...

    def fileno(self) -> int: ...

    def release(self) -> None: ...


class Chip(Protocol):
    def request(self, consumer: str, lines: Mapping[int, LineSettings]) -> LineRequest: ...

    def close(self) -> None: ...


ChipOpener = Callable[[str], Chip]


# -- gpiod 2.x --------------------------------------------------------------------------------


class GpiodLineRequest:
    def __init__(self, request: Any) -> None:
        self._request = request
        self._offsets: list[int] = list(request.offsets)

    def values(self) -> dict[int, bool]:
        from gpiod.line import Value  # noqa: PLC0415 - gpiod is an optional extra

        return {line: value == Value.ACTIVE
                for line, value in zip(self._offsets, self._request.get_values(self._offsets),
                                       strict=True)}

    def read_edges(self) -> list[Edge]:
        from gpiod import EdgeEvent  # noqa: PLC0415

        edges: list[Edge] = []
        # wait_edge_events(0) is a poll() with a zero timeout: it never blocks, and a read
        # after it returns what is buffered at once, so no thread is needed.
        while self._request.wait_edge_events(0):
            for event in self._request.read_edge_events():
                edges.append(Edge(line=event.line_offset,
                                  active=event.event_type is EdgeEvent.Type.RISING_EDGE,
                                  t=event.timestamp_ns / 1e9, seqno=event.line_seqno))
        return edges

    def fileno(self) -> int:
        return int(self._request.fd)  # the request's file descriptor: poll()-able for events

    def release(self) -> None:
        self._request.release()


class GpiodChip:
    """A GPIO character device through the `gpiod` wheel (libgpiod v2 vendored in it)."""

    def __init__(self, path: str) -> None:
        import gpiod  # noqa: PLC0415 - optional extra `batigate[gpio]`; imported only on a Pi

        if not path.startswith("/"):
            path = f"/dev/{path}"  # `gpiochip0` as gpioinfo prints it
        self._gpiod = gpiod
        self._chip = gpiod.Chip(path)

    def request(self, consumer: str, lines: Mapping[int, LineSettings]) -> GpiodLineRequest:
        from gpiod.line import Bias, Direction, Edge as GEdge  # noqa: PLC0415

        biases = {"as-is": Bias.AS_IS, "disabled": Bias.DISABLED, "pull-up": Bias.PULL_UP,
                  "pull-down": Bias.PULL_DOWN}
        config = {
            line: self._gpiod.LineSettings(direction=Direction.INPUT, edge_detection=GEdge.BOTH,
                                           bias=biases[s.bias], active_low=s.active_low,
                                           debounce_period=timedelta(seconds=s.debounce))
            for line, s in lines.items()}
        return GpiodLineRequest(self._chip.request_lines(config=config, consumer=consumer,
                                                         event_buffer_size=EVENT_BUFFER))

    def close(self) -> None:
        self._chip.close()


def open_gpiod(path: str) -> Chip:
    return GpiodChip(path)


# -- the fake ---------------------------------------------------------------------------------


@dataclass
class _FakeLine:
    high: bool  # physical level
    settings: LineSettings | None = None
    seqno: int = 0


@dataclass
class FakeLineRequest:
    chip: FakeChip
    lines: dict[int, LineSettings]
    buffer_size: int
    events: deque[Edge] = field(default_factory=deque)
    dropped: int = 0
    released: bool = False
    # Like the kernel's request fd, readable while events are pending: a pipe with one byte per
    # event, so the driver's event-loop reader is the same code on the fake as on a real chip.
    _pipe: tuple[int, int] = field(default_factory=lambda: _nonblocking_pipe())

    def values(self) -> dict[int, bool]:
        self._check()
        return {line: self.chip.logical(line) for line in self.lines}

    def read_edges(self) -> list[Edge]:
        self._check()
        out = list(self.events)
        self.events.clear()
        try:
            while os.read(self._pipe[0], 4096):
                pass
        except BlockingIOError:
            pass  # drained
        return out

    def fileno(self) -> int:
        self._check()
        return self._pipe[0]

    def release(self) -> None:
        self.released = True
        self.chip.requests.remove(self)
        for fd in self._pipe:
            os.close(fd)

    def _check(self) -> None:
        if self.released:
            raise OSError(errno.EBADF, "line request released")

    def _push(self, edge: Edge) -> None:
        if len(self.events) >= self.buffer_size:
            self.events.popleft()  # the kernel drops the oldest; the seqno gap tells the reader
            self.dropped += 1
        self.events.append(edge)
        try:
            os.write(self._pipe[1], b"e")
        except BlockingIOError:
            pass  # the pipe is full: it is readable anyway, which is all it says


def _nonblocking_pipe() -> tuple[int, int]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    return read, write


class FakeChip:
    """A chip in memory: tests move physical levels with `set_level`, at times of their choosing.

    Levels start low, or as the bias pulls a floating line once requested with `pull-up`.
    """

    def __init__(self, clock: Callable[[], float], *, num_lines: int = 32,
                 buffer_size: int = EVENT_BUFFER) -> None:
        self.clock = clock
        self.num_lines = num_lines
        self.buffer_size = buffer_size
        self.lines: dict[int, _FakeLine] = {}
        self.requests: list[FakeLineRequest] = []
        self.closed = False

    def logical(self, line: int) -> bool:
        state = self.lines[line]
        active_low = state.settings.active_low if state.settings else False
        return state.high != active_low

    def set_level(self, line: int, high: bool, at: float | None = None) -> None:
        """Drive the physical level of `line`; an edge is queued if it changes a requested line."""
        state = self.lines.setdefault(line, _FakeLine(high=high))
        if state.high == high:
            return
        before = self.logical(line)
        state.high = high
        if state.settings is None:
            return
        state.seqno += 1
        edge = Edge(line=line, active=not before, t=self.clock() if at is None else at,
                    seqno=state.seqno)
        for request in self.requests:
            if line in request.lines:
                request._push(edge)  # noqa: SLF001 - the fake plays the kernel's part

    def request(self, consumer: str, lines: Mapping[int, LineSettings]) -> FakeLineRequest:
        del consumer
        if self.closed:
            raise OSError(errno.EBADF, "chip closed")
        for line in lines:
            if not 0 <= line < self.num_lines:
                raise OSError(errno.EINVAL, f"line {line} is not on this chip "
                                            f"(0..{self.num_lines - 1})")
            if any(line in r.lines for r in self.requests):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        for line, settings in lines.items():
            floating = line not in self.lines
            state = self.lines.setdefault(line, _FakeLine(high=settings.bias == "pull-up"))
            if floating and settings.bias == "pull-down":
                state.high = False
            state.settings = settings
            state.seqno = 0  # the kernel numbers each request's events from 1
        request = FakeLineRequest(self, dict(lines), self.buffer_size)
        self.requests.append(request)
        return request

    def close(self) -> None:
        self.closed = True
