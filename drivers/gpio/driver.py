"""`GpioDriver`: dry contacts (skydome, garage door, pump float, lift fault relay) on a GPIO chip.

The agent polls; contacts move whenever they like. So the driver requests each device's lines
with edge detection on its first poll and, at every poll, drains the edge events the kernel has
buffered since the last one (a non-blocking read), folds them into each input's debounced state,
then answers the current state and the derived points. No task of its own runs between polls and
no edge is lost in between: the kernel keeps them, with their timestamps, in the request's event
buffer (1024 events). If that buffer overflowed anyway, the per-line sequence numbers show a gap:
the driver counts the loss (`lost_events` in the bus stats) and re-reads the levels.

Edges also reach the rules as they happen, not a poll period later: the agent gives the driver a
`wake(device_id)` callback (`agent.sdk.driver.WakingDriver`). The driver watches each request's file
descriptor on the event loop (no thread, no task); the first pending edge calls `wake`, the
device's poller polls at once and the drain above does the rest. A debounce still running at that
poll asks for one more wake when it ends. The reader is re-armed at most every `WAKE_GAP`
seconds, so a chattering contact costs at most that many polls per second, never a busy loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from agent.sdk.capabilities import Capabilities
from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable, DriverError, PointNotWritable
from agent.sdk.models import PointValue, Quality, Value
from drivers.gpio.chip import Chip, ChipOpener, LineRequest, LineSettings, open_gpiod
from drivers.gpio.config import GpioBusConfig, GpioDeviceConfig, GpioPointConfig
from drivers.gpio.state import InputState

log = logging.getLogger(__name__)

WAKE_GAP = 0.1  # at most one edge-driven poll per device per this many seconds


@dataclass
class _Watch:
    """The lines of one device: its kernel request and each input's state."""

    points: list[GpioPointConfig]
    request: LineRequest
    inputs: dict[int, InputState]  # by line offset


class GpioDriver:
    bus_model: ClassVar[type[BusConfig]] = GpioBusConfig
    device_model: ClassVar[type[DeviceConfig]] = GpioDeviceConfig
    point_model: ClassVar[type[PointConfig]] = GpioPointConfig
    capabilities: ClassVar[Capabilities] = Capabilities("gpio")  # no wizard questions, no scan

    def __init__(self, bus: BusConfig, *, open_chip: ChipOpener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(bus, GpioBusConfig):
            raise DriverError(f"bus {bus.id}: expected a GPIO bus config, got {type(bus)}")
        self.bus = bus
        self.stats = BusStats(extra={"edges": 0, "lost_events": 0})
        self._open_chip = open_chip or open_gpiod
        self.clock = clock  # must tick on CLOCK_MONOTONIC, the kernel's edge-event clock
        self._chip: Chip | None = None
        self._watches: dict[str, _Watch] = {}
        # Set by the agent's field: poll this device now (edges are pending). None: poll only.
        self.wake: Callable[[str], None] | None = None
        self._readers: dict[str, int] = {}  # device id -> request fd watched on the loop
        self._timers: dict[str, asyncio.TimerHandle] = {}  # re-arm and debounce-end wakes

    async def __aenter__(self) -> Self:
        try:
            await self._ensure_chip()
        except DeviceUnavailable as exc:
            # Not fatal here (driver contract): every poll tries again and reports it.
            log.warning("%s", exc)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for device_id in list(self._watches):
            self._release(device_id)
        if self._chip is not None:
            self._chip.close()
            self._chip = None

    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        device = self._gpio_device(device)
        watch = await self._watch(device)
        now = self.clock()
        self._drain(watch, now)
        self._rearm(device.id, watch, now)
        return [self._value(point, device, watch, now) for point in device.points]

    async def write(self, device: DeviceConfig, point: PointConfig, value: Value) -> None:
        del value
        raise PointNotWritable(f"{device.id}/{point.name} is a GPIO input; it cannot be written")

    # -- helpers -------------------------------------------------------------------------------

    def _gpio_device(self, device: DeviceConfig) -> GpioDeviceConfig:
        if not isinstance(device, GpioDeviceConfig):
            raise DriverError(f"device {device.id}: not configured for a GPIO bus")
        return device

    async def _ensure_chip(self) -> Chip:
        if self._chip is None:
            try:
                # Opening a character device is a blocking syscall: keep it off the loop.
                self._chip = await asyncio.to_thread(self._open_chip, self.bus.chip)
            except OSError as exc:
                raise DeviceUnavailable(f"gpio chip {self.bus.chip}: "
                                        f"{exc.strerror or exc}") from None
        return self._chip

    async def _watch(self, device: GpioDeviceConfig) -> _Watch:
        watch = self._watches.get(device.id)
        if watch is not None and watch.points == device.points:
            return watch
        if watch is not None:  # the device's points changed (config apply): request anew
            self._release(device.id)
        chip = await self._ensure_chip()
        inputs = device.inputs()
        settings = {p.line: LineSettings(active_low=p.active_low, bias=p.bias,
                                         debounce=p.debounce)
                    for p in inputs if p.line is not None}
        try:
            request = await asyncio.to_thread(chip.request, self.bus.consumer, settings)
            levels = request.values()
        except OSError as exc:
            raise DeviceUnavailable(f"{device.id}: cannot request lines {sorted(settings)} on "
                                    f"{self.bus.chip}: {exc.strerror or exc}") from None
        now = self.clock()
        # The state at start comes from a read: edges only report changes.
        states = {line: InputState.at_start(levels[line], now, settings[line].debounce)
                  for line in settings}
        watch = _Watch(list(device.points), request, states)
        self._watches[device.id] = watch
        return watch

    # -- edges as they happen ----------------------------------------------------------------------

    def _release(self, device_id: str) -> None:
        self._unwatch(device_id)
        timer = self._timers.pop(device_id, None)
        if timer is not None:
            timer.cancel()
        self._watches.pop(device_id).request.release()

    def _unwatch(self, device_id: str) -> None:
        fd = self._readers.pop(device_id, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)

    def _readable(self, device_id: str) -> None:
        """Edges are pending: stop watching (the poll drains them, then re-arms) and wake."""
        self._unwatch(device_id)
        if self.wake is not None:
            self.wake(device_id)

    def _rearm(self, device_id: str, watch: _Watch, now: float) -> None:
        """After a drain: watch the fd again after WAKE_GAP, or when a debounce ends if sooner
        matters (that edge is only confirmed by a poll after it has held)."""
        if self.wake is None:
            return
        loop = asyncio.get_running_loop()
        pending = [s.raw_since + s.debounce - now for s in watch.inputs.values()
                   if s.raw != s.stable]
        old = self._timers.pop(device_id, None)
        if old is not None:
            old.cancel()
        if pending:  # wake when the newest edge has held long enough to count
            self._timers[device_id] = loop.call_later(max(min(pending), 0.0) + 0.001,
                                                      self._readable, device_id)
        elif device_id not in self._readers:
            self._timers[device_id] = loop.call_later(WAKE_GAP, self._arm, device_id)

    def _arm(self, device_id: str) -> None:
        self._timers.pop(device_id, None)
        watch = self._watches.get(device_id)
        if watch is None or device_id in self._readers:
            return
        try:
            fd = watch.request.fileno()
        except OSError as exc:  # released under us: the next poll reports the request
            log.warning("gpio %s: cannot watch %s for edges: %s", self.bus.chip, device_id, exc)
            return
        self._readers[device_id] = fd
        asyncio.get_running_loop().add_reader(fd, self._readable, device_id)

    def _drain(self, watch: _Watch, now: float) -> None:
        try:
            edges = watch.request.read_edges()
        except OSError as exc:
            raise DeviceUnavailable(f"gpio {self.bus.chip}: {exc.strerror or exc}") from None
        lost = False
        for edge in sorted(edges, key=lambda e: e.t):
            state = watch.inputs.get(edge.line)
            if state is None:
                continue
            # Sequence numbers start at 1 in each request: a first edge numbered 8 lost 7.
            if edge.seqno != state.last_seqno + 1:
                self.stats.extra["lost_events"] += edge.seqno - state.last_seqno - 1
                lost = True
            state.last_seqno = edge.seqno
            self.stats.extra["edges"] += 1
            state.edge(edge.active, edge.t)
        for state in watch.inputs.values():
            state.settle(now)
        if lost:
            log.warning("gpio %s: edge events were lost (buffer overflow); levels re-read",
                        self.bus.chip)
            levels = watch.request.values()
            for line, state in watch.inputs.items():
                state.resync(levels[line], now)

    def _value(self, point: GpioPointConfig, device: GpioDeviceConfig, watch: _Watch,
               now: float) -> PointValue:
        if point.line is not None:
            return PointValue(point.name, watch.inputs[point.line].stable)
        source = next(p for p in device.points if p.name == point.of)
        assert source.line is not None  # checked by GpioDeviceConfig
        state = watch.inputs[source.line]
        if point.derive == "active_for":
            # Active since before the start: a lower bound, said so by the quality.
            quality = Quality.GOOD if state.since_known or not state.stable else Quality.UNCERTAIN
            return PointValue(point.name, state.active_for(now), quality)
        if point.derive == "activations_last_hour":
            return PointValue(point.name, state.activations_last_hour(now))
        return PointValue(point.name, state.activations)
