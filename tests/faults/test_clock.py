"""A gateway without a real-time clock: the agent starts at 1970, NTP sets the clock later, and
the clock is then stepped back and forth. The agent runs in this process with a fake clock (the
only fake: wall time = monotonic + an offset the test moves; `synced()` stands in for adjtimex);
the broker and the Modbus building are real."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.sdk.clock import SystemClock
from agent.runtime.timesync import PLAUSIBLE_AFTER
from tests.faults.harness import (assert_contiguous, assert_lanes_in_order, config, deduplicated, observing,
                                  persistent_broker)
from tests.integration.helpers import load, running_agent


class PiClock(SystemClock):
    """The system clock's scheduling, with a wall clock the test sets."""

    def __init__(self) -> None:
        self.offset = 0.0  # wall = monotonic: a few thousand seconds after 1970-01-01
        self.ntp = False

    def time(self) -> float:
        return time.monotonic() + self.offset

    def synced(self) -> bool:
        return self.ntp


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_boot_at_1970_then_ntp_then_jumps(tmp_path: Path, building: tuple) -> None:
    """Proves: readings taken before the clock is synchronized are flagged `uncertain`, are not
    published as 1970 but held, and arrive once NTP sets the clock with the real time at which
    they were taken (monotonic stamp + offset, within the poll jitter); later jumps of a day
    forwards and an hour backwards (with max_age 10 min set) reorder nothing and drop nothing:
    seqs contiguous, no buffer.overflow, every reading flows."""
    _, modbus_port = building
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    clock = PiClock()
    conf = load(config(tmp_path, broker, modbus_port, buffer={"max_age": "10m"}))
    try:
        async with observing(broker.port) as observer, \
                running_agent(conf, clock) as agent:
            await asyncio.sleep(3)  # polling at 1970
            assert agent.outbox.stats()["held_for_clock"] >= 10
            assert not [b for b in observer.first_deliveries() if "e" in b]
            real = 1_767_225_600.0
            first_after_sync = agent.outbox.stats()["next_seq"]
            synced_at_mono = time.monotonic()
            clock.offset = real - synced_at_mono  # NTP steps the clock
            clock.ntp = True
            await observer.wait_for(lambda ms: any(
                b.get("e") and b["ts"] > real + 2 for b in observer.first_deliveries()),
                timeout=15)
            clock.offset += 86400  # a day forwards
            await asyncio.sleep(2)
            clock.offset -= 86400 + 3600  # an hour behind the real time
            await asyncio.sleep(3)
            assert agent.outbox.dropped == 0
    finally:
        broker.stop()
    tm = [b for b in observer.first_deliveries() if "e" in b]
    assert all(b["ts"] >= PLAUSIBLE_AFTER for b in observer.first_deliveries()), \
        "something was published with a 1970 timestamp"
    early = [b for b in tm if b["seq"] < first_after_sync]
    assert len(early) >= 10  # taken before the sync, corrected back to their real time
    for body in early:
        assert body["e"][0]["bt"] == pytest.approx(body["ts"], abs=0.01)
        assert all(r.get("q") == "uncertain" for r in body["e"] if "v" in r or "vb" in r)
        assert real - 10 < body["ts"] < real  # 3 s of polling just before the sync
    later = [b for b in tm if b["seq"] > first_after_sync + 20]
    assert later and all("q" not in r or r["q"] == "bad" for r in later[-1]["e"])
    assert_contiguous(set(deduplicated(observer)))
    assert not [b for b in observer.first_deliveries() if b.get("type") == "buffer.overflow"]
    assert_lanes_in_order(observer)
    assert any(b.get("type") == "clock.jump" for b in observer.first_deliveries())
