"""The contract between the agent and a field driver.

A driver owns one bus (one RS-485 line, one TCP endpoint, one GPIO chip). It knows how to talk to
the devices on it and nothing else: scheduling, one-transaction-at-a-time, down/up bookkeeping and
backoff are done for every driver alike by `agent.runtime.poller`, so drivers stay small.

Drivers are found through the `batigate.drivers` entry-point group (`agent.sdk.registry`), and bring
their own pydantic models for their part of the config file:

- `bus_model`    validates an entry of `buses:` (subclass of `BusConfig`);
- `device_model` validates an entry of `devices:` on such a bus (subclass of `DeviceConfig`);
- `point_model`  the type of `device_model.points` items (subclass of `PointConfig`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.models import PointValue, Value


@dataclass(slots=True)
class BusStats:
    """Counters a driver keeps about its bus; published in `health`."""

    requests: int = 0
    timeouts: int = 0
    exceptions: int = 0  # protocol-level error answers (Modbus exception codes, M-Bus errors)
    garbage: int = 0  # frames that could not be decoded (bad CRC/checksum, wrong length, junk)
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "timeouts": self.timeouts,
                "exceptions": self.exceptions, "garbage": self.garbage, **self.extra}


class Driver(Protocol):
    bus_model: ClassVar[type[BusConfig]]
    device_model: ClassVar[type[DeviceConfig]]
    point_model: ClassVar[type[PointConfig]]

    stats: BusStats

    def __init__(self, bus: BusConfig) -> None: ...

    async def __aenter__(self) -> Self: ...  # may not raise for an absent peer: poll() reconnects

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        """Read every point of `device` once.

        Raises `DeviceUnavailable` when the device does not answer at all (timeout, no link).
        A point the device refuses (exception code, undecodable) comes back with quality BAD.
        """
        ...

    async def write(self, device: DeviceConfig, point: PointConfig, value: Value) -> None:
        """Write one writable point; raises `DeviceUnavailable` or `DriverError`."""
        ...


Wake = Callable[[str], None]


class WakingDriver(Driver, Protocol):
    """A polled driver that knows when a device has news (GPIO edges), so it need not wait for
    the next poll: the field sets `wake` when it opens the bus, and `wake(device_id)` makes that
    device's poller poll at once (the regular schedule is kept). Called from the event loop
    (a reader callback, a timer), never from a thread; the driver bounds how often it calls it.
    """

    wake: Wake | None


Hear = Callable[[Sequence[PointValue], float], None]


class PushDriver(Protocol):
    """A driver whose devices speak when they like (radio meters, GPIO edges): nothing to poll.

    The field runs `listen()` as one task per bus (restarted with backoff if it fails) and gives
    the driver, per device, a `hear(values, ts)` callback; `agent.runtime.watcher.DeviceWatcher` turns
    what is heard, and what is not heard for `silence(device)` seconds, into the same values and
    ok/down states a poller produces, so rules, commands and health see no difference.
    """

    push: ClassVar[bool]  # True: the field watches instead of polling
    # Set by the field: bus events for `evt` (a receiver reset, lost, receiving again).
    events: Callable[[dict[str, Any]], None] | None
    bus_model: ClassVar[type[BusConfig]]
    device_model: ClassVar[type[DeviceConfig]]
    point_model: ClassVar[type[PointConfig]]

    stats: BusStats

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def listen(self) -> None:
        """Receive until cancelled; a fault of the bus is handled (counted, retried) inside."""
        ...

    def attach(self, device: DeviceConfig, hear: Hear) -> None: ...

    def detach(self, device_id: str) -> None: ...

    def silence(self, device: DeviceConfig) -> float:
        """Seconds without a message after which `device` is down."""
        ...

    async def write(self, device: DeviceConfig, point: PointConfig, value: Value) -> None: ...


def is_push(driver: object) -> bool:
    return bool(getattr(driver, "push", False))
