"""The driver contract as a test kit: what every driver must do, checked against the driver
package's own simulator. A driver's tests subclass `PolledDriverContract` (or
`PushDriverContract`) and give one fixture, `case`, that describes their bus; every test below
then runs against that driver. drivers/README.md says what each rule is for.

    class TestContract(PolledDriverContract):
        @pytest.fixture
        async def case(self, my_simulator) -> AsyncIterator[PolledCase]:
            yield PolledCase(MyDriver, bus=..., absent_bus=..., device=..., dead_device=...,
                             refused=(device, "point"))
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable, DriverError
from agent.sdk.models import PointValue, Quality

PROMPT = 1.0  # seconds a cancelled driver call may take to end


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ceiling(device: DeviceConfig) -> float:
    """The poller's bound on one poll (agent.poller.DevicePoller.ceiling)."""
    return device.timeout * (2 + len(device.points)) + 1.0


def check_stats(stats: BusStats) -> dict[str, int]:
    counters = stats.as_dict()
    assert {"requests", "timeouts", "exceptions", "garbage"} <= set(counters), counters
    assert all(isinstance(v, int) and v >= 0 for v in counters.values()), counters
    return counters


@dataclass
class PolledCase:
    driver: Callable[[BusConfig], Any]  # the driver class (or a factory taking the bus)
    bus: BusConfig  # served by the simulator
    absent_bus: BusConfig  # the same kind of bus where no peer is (a closed port)
    device: DeviceConfig  # answers every point
    dead_device: DeviceConfig  # on `bus`, nobody answers it
    refused: tuple[DeviceConfig, str]  # a device whose peer refuses (or lacks) this point
    read_only: tuple[DeviceConfig, PointConfig]  # a point not declared writable


class PolledDriverContract:
    """What every polled driver (`agent.sdk.driver.Driver`) does; see drivers/README.md."""

    async def test_opening_with_an_absent_peer_does_not_raise(self, case: PolledCase) -> None:
        """__aenter__ must not fail for a peer that is not there yet: the agent starts anyway
        and each poll reports the device down (DeviceUnavailable) within the poll's bound."""
        async with case.driver(case.absent_bus) as driver:
            started = time.monotonic()
            with pytest.raises(DeviceUnavailable):
                await driver.poll(case.device)
            assert time.monotonic() - started < ceiling(case.device)
            check_stats(driver.stats)

    async def test_a_good_poll_is_counted_and_answers_every_point(self, case: PolledCase
                                                                  ) -> None:
        async with case.driver(case.bus) as driver:
            before = check_stats(driver.stats)
            values = await driver.poll(case.device)
            after = check_stats(driver.stats)
        assert after["requests"] > before["requests"]  # the driver counts its own requests
        assert {v.name for v in values} == {p.name for p in case.device.points}
        assert all(isinstance(v, PointValue) for v in values)
        assert any(v.quality is Quality.GOOD and v.value is not None for v in values)

    async def test_a_dead_device_is_unavailable_counted_and_bounded(self, case: PolledCase
                                                                    ) -> None:
        async with case.driver(case.bus) as driver:
            before = check_stats(driver.stats)
            started = time.monotonic()
            with pytest.raises(DeviceUnavailable):
                await driver.poll(case.dead_device)
            assert time.monotonic() - started < ceiling(case.dead_device)
            after = check_stats(driver.stats)
            assert after["timeouts"] > before["timeouts"]
            assert len(await driver.poll(case.device)) == len(case.device.points)  # bus fine

    async def test_a_refused_point_reads_bad_and_the_device_stays_up(self, case: PolledCase
                                                                     ) -> None:
        device, name = case.refused
        async with case.driver(case.bus) as driver:
            values = {v.name: v for v in await driver.poll(device)}
        assert set(values) == {p.name for p in device.points}
        assert values[name].quality is Quality.BAD and values[name].value is None
        assert any(v.quality is Quality.GOOD for n, v in values.items() if n != name)

    async def test_cancellation_is_prompt_and_leaves_the_bus_usable(self, case: PolledCase
                                                                     ) -> None:
        async with case.driver(case.bus) as driver:
            task = asyncio.create_task(driver.poll(case.dead_device))
            await asyncio.sleep(min(0.05, case.dead_device.timeout / 4))
            task.cancel()
            started = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, PROMPT + 1)
            assert time.monotonic() - started < PROMPT
            assert len(await driver.poll(case.device)) == len(case.device.points)

    async def test_a_point_not_declared_writable_is_refused(self, case: PolledCase) -> None:
        device, point = case.read_only
        async with case.driver(case.bus) as driver:
            with pytest.raises(DriverError):  # PointNotWritable, before anything is sent
                await driver.write(device, point, 1)


@dataclass
class PushCase:
    driver: Callable[[BusConfig], Any]
    bus: BusConfig  # a receiver the simulator serves
    absent_bus: BusConfig  # a receiver that is not there
    device: DeviceConfig  # transmits while `transmitting()` is active
    transmitting: Callable[[], AbstractAsyncContextManager[Any]]
    events: list[dict[str, Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def listening(driver: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.listen())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class PushDriverContract:
    """What every push driver (`agent.sdk.driver.PushDriver`) does; see drivers/README.md."""

    async def test_an_absent_receiver_is_reported_and_retried_not_raised(
            self, case: PushCase) -> None:
        async with case.driver(case.absent_bus) as driver:
            driver.events = case.events.append
            async with listening(driver) as task:
                await asyncio.sleep(1.0)
                assert not task.done(), "listen() must handle its bus faults inside"
            check_stats(driver.stats)
        assert [e["type"] for e in case.events][:1] == ["bus.down"]

    async def test_a_device_is_heard_with_values_and_counted(self, case: PushCase) -> None:
        heard: list[Sequence[PointValue]] = []
        async with case.driver(case.bus) as driver, case.transmitting():
            driver.events = case.events.append
            driver.attach(case.device, lambda values, ts: values and heard.append(values))
            async with listening(driver):
                async with asyncio.timeout(10):
                    while not heard:
                        await asyncio.sleep(0.05)
            driver.detach(case.device.id)
            assert check_stats(driver.stats)["requests"] >= 1
        assert any(v.quality is Quality.GOOD for v in heard[0])

    async def test_cancelling_listen_is_prompt(self, case: PushCase) -> None:
        async with case.driver(case.bus) as driver, case.transmitting():
            task = asyncio.create_task(driver.listen())
            await asyncio.sleep(0.3)
            task.cancel()
            started = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, PROMPT + 1)
            assert time.monotonic() - started < PROMPT

    async def test_silence_is_a_finite_positive_bound_and_writes_are_refused(
            self, case: PushCase) -> None:
        async with case.driver(case.bus) as driver:
            silence = driver.silence(case.device)
            assert 0 < silence and math.isfinite(silence)
            if case.device.points:
                with pytest.raises(DriverError):
                    await driver.write(case.device, case.device.points[0], 1)
