"""The GPIO driver on a FakeChip with a fake clock (the kernel's gpio-sim is not available here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from agent.config import loader as config
from agent.sdk.errors import DeviceUnavailable, PointNotWritable
from agent.sdk.models import Quality
from drivers.gpio.chip import Chip, FakeChip
from drivers.gpio.config import GpioBusConfig, GpioDeviceConfig
from drivers.gpio.driver import GpioDriver
from tests.clocks import FakeClock

START = 5_000.0
LINE = 17


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def chip(clock: FakeClock) -> FakeChip:
    return FakeChip(clock)


def gpio_config(tmp_path: Path) -> config.Config:
    """A skydome on line 17 through the door-contact profile, checked like a technician's file."""
    data = {"gateway": {"id": "gw-1", "site": "site-1"},
            "mqtt": {"host": "127.0.0.1", "tls": False},
            "buses": [{"id": "gpio0", "driver": "gpio"}],
            "devices": [{"id": "skydome", "bus": "gpio0", "profile": "door-contact",
                         "points": [{"name": "open", "line": LINE}]}]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    return gpio_config(tmp_path)


@pytest.fixture
async def driver(cfg: config.Config, chip: FakeChip,
                 clock: FakeClock) -> AsyncIterator[GpioDriver]:
    def open_chip(path: str) -> Chip:
        assert path == "/dev/gpiochip0"
        return chip

    async with GpioDriver(cfg.bus("gpio0"), open_chip=open_chip, clock=clock) as drv:
        yield drv


async def poll(driver: GpioDriver, cfg: config.Config) -> dict[str, object]:
    return {v.name: v.value for v in await driver.poll(cfg.device("skydome"))}


def press(chip: FakeChip, at: float, *, opened: bool) -> None:
    # The profile's wiring: active low with the pull-up, so an open door pulls the line low.
    chip.set_level(LINE, not opened, at=at)


async def test_state_at_start_is_read_not_waited_for(driver: GpioDriver, cfg: config.Config,
                                                    chip: FakeChip, clock: FakeClock) -> None:
    chip.set_level(LINE, False)  # open before the agent starts: no edge will ever say so
    values = await driver.poll(cfg.device("skydome"))
    by_name = {v.name: v for v in values}
    assert by_name["open"].value is True
    assert by_name["openings"].value == 0  # the opening was not seen
    clock.now += 90
    by_name = {v.name: v for v in await driver.poll(cfg.device("skydome"))}
    # Open for at least 90 s: a lower bound, and the quality says so.
    assert by_name["open_for"].value == 90.0
    assert by_name["open_for"].quality is Quality.UNCERTAIN


async def test_a_closed_door_with_the_pull_up(driver: GpioDriver, cfg: config.Config) -> None:
    # Nothing drives the line: the pull-up holds it high, which active_low reads as closed.
    assert await poll(driver, cfg) == {"open": False, "open_for": 0.0,
                                       "openings_last_hour": 0, "openings": 0}


async def test_edges_between_polls_are_all_counted_and_dated(
        driver: GpioDriver, cfg: config.Config, chip: FakeChip, clock: FakeClock) -> None:
    await poll(driver, cfg)
    for k in range(5):  # five visits to the roof between two polls
        press(chip, START + 10 * k + 1, opened=True)
        press(chip, START + 10 * k + 5, opened=False)
    press(chip, START + 60, opened=True)
    clock.now = START + 75
    assert await poll(driver, cfg) == {"open": True, "open_for": 15.0,
                                       "openings_last_hour": 6, "openings": 6}
    assert driver.stats.extra["edges"] == 11 and driver.stats.extra["lost_events"] == 0


async def test_bounces_shorter_than_debounce_are_ignored(
        driver: GpioDriver, cfg: config.Config, chip: FakeChip, clock: FakeClock) -> None:
    await poll(driver, cfg)
    # A contact bouncing for 30 ms as it closes (the profile debounces 50 ms) ...
    t = START + 1
    for offset in (0.0, 0.008, 0.015, 0.022, 0.030):
        press(chip, t + offset, opened=offset in (0.0, 0.015, 0.030))
    # ... and a lone 20 ms glitch later on.
    press(chip, START + 10, opened=False)
    press(chip, START + 10.02, opened=True)
    clock.now = START + 20
    # Open since the last bounce, the level that then held: 20 - 1.03 s.
    assert await poll(driver, cfg) == {"open": True, "open_for": 18.97,
                                       "openings_last_hour": 1, "openings": 1}


async def test_an_edge_younger_than_debounce_waits_for_the_next_poll(
        driver: GpioDriver, cfg: config.Config, chip: FakeChip, clock: FakeClock) -> None:
    await poll(driver, cfg)
    press(chip, START + 1.0, opened=True)
    clock.now = START + 1.02  # 20 ms after the edge: it may still be a bounce
    assert (await poll(driver, cfg))["open"] is False
    clock.now = START + 2
    values = await poll(driver, cfg)
    assert values["open"] is True and values["open_for"] == 1.0  # dated at the edge


async def test_openings_per_hour_slide_with_the_clock(
        driver: GpioDriver, cfg: config.Config, chip: FakeChip, clock: FakeClock) -> None:
    await poll(driver, cfg)
    for minute in (0, 10, 20, 50):
        press(chip, START + 60 * minute + 1, opened=True)
        press(chip, START + 60 * minute + 31, opened=False)
    clock.now = START + 3600  # the first opening (at +1 s) is still within the hour
    assert (await poll(driver, cfg))["openings_last_hour"] == 4
    clock.now = START + 3600 + 30 * 60  # openings at 10 and 20 minutes have left the hour
    values = await poll(driver, cfg)
    assert values["openings_last_hour"] == 1 and values["openings"] == 4


async def test_a_buffer_overflow_is_counted_and_the_level_re_read(
        cfg: config.Config, clock: FakeClock) -> None:
    chip = FakeChip(clock, buffer_size=4)
    async with GpioDriver(cfg.bus("gpio0"), open_chip=lambda _path: chip, clock=clock) as drv:
        await drv.poll(cfg.device("skydome"))
        for k in range(5):  # 10 edges into a 4-event buffer: the kernel keeps the newest 4
            press(chip, START + 10 * k + 1, opened=True)
            press(chip, START + 10 * k + 5, opened=False)
        press(chip, START + 60, opened=True)
        clock.now = START + 70
        values = {v.name: v.value for v in await drv.poll(cfg.device("skydome"))}
    assert drv.stats.extra["lost_events"] == 7
    assert values["open"] is True  # whatever was lost, the state is the line's


async def test_no_chip_is_a_device_down_and_retried(cfg: config.Config,
                                                    clock: FakeClock) -> None:
    attempts: list[str] = []

    def absent(path: str) -> Chip:
        attempts.append(path)
        raise FileNotFoundError(2, "No such file or directory")

    async with GpioDriver(cfg.bus("gpio0"), open_chip=absent, clock=clock) as drv:
        with pytest.raises(DeviceUnavailable, match="gpio chip /dev/gpiochip0: No such file"):
            await drv.poll(cfg.device("skydome"))
    assert len(attempts) == 2  # at start, then at the poll


async def test_a_line_held_by_another_device_is_reported(
        driver: GpioDriver, cfg: config.Config) -> None:
    await poll(driver, cfg)
    twin = cfg.device("skydome").model_copy(update={"id": "garage"})
    with pytest.raises(DeviceUnavailable, match=r"cannot request lines \[17\].*busy"):
        await driver.poll(twin)


async def test_inputs_cannot_be_written(driver: GpioDriver, cfg: config.Config) -> None:
    device = cfg.device("skydome")
    with pytest.raises(PointNotWritable):
        await driver.write(device, device.points[0], True)


def test_config_checks() -> None:
    bus = GpioBusConfig.model_validate({"id": "g", "driver": "gpio"})
    assert bus.chip == "/dev/gpiochip0"
    base = {"id": "d", "bus": "g"}
    bad = [
        ([{"name": "a", "line": 1}, {"name": "b", "line": 1}], "line 1 is used by 'a' and 'b'"),
        ([{"name": "a", "line": 1}, {"name": "c", "of": "x", "derive": "activations"}],
         "`of: x` is not an input point"),
        ([{"name": "a", "line": 1, "of": "a", "derive": "activations"}], "not both"),
        ([{"name": "c", "of": "a"}], "needs both `of:`"),
        ([{"name": "a", "line": 1, "writable": True}], "cannot be writable"),
    ]
    for points, message in bad:
        with pytest.raises(ValueError, match=message):
            GpioDeviceConfig.model_validate({**base, "points": points})
    ok = GpioDeviceConfig.model_validate({**base, "points": [
        {"name": "a", "line": 1, "debounce": 0, "bias": "pull-down"}]})
    assert ok.points[0].debounce == 0.0


def test_the_sample_config_is_valid(tmp_path: Path) -> None:
    sample = yaml.safe_load((Path(__file__).parents[3] / "drivers/gpio/sample.yaml").read_text())
    data = {"gateway": {"id": "gw-1", "site": "site-1"},
            "mqtt": {"host": "127.0.0.1", "tls": False}, **sample}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = config.load(path)
    pit = cfg.device("pit-b")
    assert [p.debounce for p in pit.points[:3]] == [0.05, 0.05, 0.5]  # type: ignore[attr-defined]
    assert len(cfg.device("garage").points) == 4
