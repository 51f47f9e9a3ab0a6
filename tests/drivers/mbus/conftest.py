"""Fixtures of the M-Bus tests: a fake clock and the simulated bus over a real TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from drivers.mbus.simulator import default_meters
from tests.clocks import FakeClock
from tests.drivers.mbus.helpers import RecordingBus


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    # Each test module says when its tests happen (its T0): the meters' profiles follow the hour.
    return FakeClock(request.module.T0)


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[RecordingBus]:
    """The default building's meters, on a bus that keeps every frame the master sent."""
    bus = RecordingBus(default_meters(clock), clock)
    await bus.start()
    yield bus
    # Let the simulator see the masters' EOF first, so stop() need not cancel live connections.
    await asyncio.sleep(0.05)
    await bus.stop()
