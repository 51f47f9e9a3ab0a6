"""GPIO edges reach the rules as they happen: a running agent with a 60 s poll raises the alarm
of a pump float within a second of the edge (FakeChip in place of the kernel's chip)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.config import loader as config_mod
from drivers.gpio import driver as gpio_driver
from drivers.gpio.chip import FakeChip
from tests.broker import Mosquitto
from tests.integration.helpers import running_agent, write_config
from tests.observer import observing

ROOT = "bgw/v1/site-a/gw-test"
LINE = 17


def config_file(tmp_path: Path, broker_port: int) -> Path:
    return write_config(
        tmp_path, broker_port=broker_port, buses=[{"id": "gpio0", "driver": "gpio"}],
        devices=[{"id": "sump", "bus": "gpio0", "poll": "60s",
                  "points": [{"name": "high_water", "line": LINE, "debounce": "50ms"}]}],
        rules=[{"id": "sump-high", "type": "threshold", "point": "sump/high_water",
                "above": 0.5, "severity": "critical"}])


async def test_an_edge_raises_its_alarm_within_a_second_with_a_60s_poll(
        tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    chip = FakeChip(time.monotonic)
    monkeypatch.setattr(gpio_driver, "open_gpiod", lambda path: chip)
    config = config_mod.load(config_file(tmp_path, broker.port))

    def raised() -> list[dict]:
        return [b for b in observer.bodies("/evt") if b.get("type") == "alarm.raised"]

    async with observing(broker.port, f"{ROOT}/#") as observer, running_agent(config) as agent:
        poller = agent.pollers["sump"]
        await observer.wait_for(lambda _: poller.stats.polls >= 1, timeout=5)
        await asyncio.sleep(0.5)  # quiet: no edge, no extra poll, no alarm
        assert poller.stats.polls == 1 and not raised()
        edge_at = time.monotonic()
        chip.set_level(LINE, True)  # the float rises
        async with asyncio.timeout(5):  # raised in the agent (MQTT delivery is not timed here)
            while not agent.engine.active():
                await asyncio.sleep(0.01)
        latency = time.monotonic() - edge_at
        await observer.wait_for(lambda _: raised(), timeout=5)  # and published
        # a contact chattering for a second costs a bounded number of polls, not a busy loop
        for index in range(200):
            chip.set_level(LINE, index % 2 == 0)
            await asyncio.sleep(0.005)
        polls = poller.stats.polls
    assert latency < 1.0, f"alarm {latency:.2f}s after the edge"
    assert raised()[0]["alarm"] == "sump-high" and raised()[0]["value"] == 1
    assert polls <= 2 + 2 * 1.2 / gpio_driver.WAKE_GAP, polls
