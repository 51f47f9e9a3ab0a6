"""The simulated building bills last month on the meters' own indexes.

Its meters keep what real ones keep (a set-day value and month-end values with their dates), so
the gateway that first sees them backfills last month's start from them, and the month's end
comes from the set-day value the meter freezes at midnight, before any reading of the gateway.
`batigate meters export --month M --csv` then gives one line per meter: start, end, consumption,
each end with provenance `meter YYYY-MM-01`, and the mids that went over MQTT.

The first test runs the building, mosquitto and the agent in this process on a stepped wall
clock (the only fake) over the 1 December 2026 boundary; the second runs `batigate demo --keep`
as a technician would, on the real clock, and exports last month from what it kept.
"""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.billing.meters import spec_of
from agent.cli.main import main as cli
from agent.runtime import supervisor
from agent.sim.building import Building
from agent.sim.demo import last_month
from agent.sim.scenario import SimClock
from tests.billing.helpers import SteppedClock, paris
from tests.broker import Mosquitto
from tests.integration.helpers import load, running_agent, write_config
from tests.integration.test_schemas import assert_valid
from tests.observer import Observer
from tests.observer import observing as observe

ROOT = "bgw/v1/site-a/gw-test"
NOV1, DEC1 = paris(2026, 11, 1), paris(2026, 12, 1)


class BuildingClock(SimClock):
    """The building reads the agent's stepped wall clock: one time for the meters and the
    gateway."""

    def __init__(self, wall: SteppedClock) -> None:
        super().__init__(wall=wall.time)
        self.wall = wall

    def __call__(self) -> float:
        return self.wall.time()


async def read_after(agent: supervisor.Agent, meters: dict[str, str], wall: float) -> None:
    """Every meter's index has been read (polled or heard) after `wall` (bounded wait)."""
    def late() -> list[str]:
        return [dev for dev, point in meters.items()
                if (r := agent.pipeline.latest[dev].get(point)) is None or r.ts < wall]

    try:
        async with asyncio.timeout(20):
            while late():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not read after {wall}: {late()}") from None


def idx_bodies(observer: Observer) -> list[dict[str, Any]]:
    return [m.body for m in observer.messages if m.topic.endswith("/idx") and not m.retained]


def export(path: Path, month: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(cli, ["meters", "export", "--config", str(path), "--month", month,
                                      "--csv"])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))


def exact(count: int, scale: str) -> str:
    return f"{Decimal(count) * Decimal(scale):f}"


@pytest.mark.timeout(180)
async def test_the_building_is_billed_on_the_meters_own_indexes_over_a_month_start(
        tmp_path: Path, broker: Mosquitto) -> None:
    clock = SteppedClock(paris(2026, 11, 30, 23, 50))
    building = Building(clock=BuildingClock(clock), radio_interval=1.0)
    await building.start()
    try:
        # The wired side only: the radio driver stamps what it hears with the system clock,
        # not the agent's (the second test bills the radio meters too, on the real clock).
        sections = building.gateway_sections(poll=None, meter_poll="1s")
        path = write_config(tmp_path, broker_port=broker.port, **sections)
        config = load(path)
        meters = {d.id: spec.index for d in config.devices if (spec := spec_of(d)) is not None}
        assert len(meters) == 8  # five water meters and three heat meters
        async with observe(broker.port, f"{ROOT}/#", client_id="billing-backend") as observer:
            async with running_agent(config, clock) as agent:
                await read_after(agent, meters, clock.time())  # first sight, 23:50
                clock.jump_to(paris(2026, 12, 1, 0, 4))
                await read_after(agent, meters, clock.time())  # across midnight
                await observer.wait_for(lambda ms: {
                    b["dev"] for b in idx_bodies(observer) if b["date"] == "2026-12-01"
                } == set(meters), timeout=20)
                figures = agent.health()["billing"]
    finally:
        await building.stop()

    assert figures["kept_existing"] == 0 and figures["stored_other_unit"] == 0
    received = idx_bodies(observer)
    mids: dict[tuple[str, str], set[str]] = {}
    for body in received:
        mids.setdefault((body["dev"], body["date"]), set()).add(body["mid"])
    assert all(len(found) == 1 for found in mids.values()), "a boundary with two mids"
    by_key = {(b["dev"], b["date"]): b for b in received}
    # The two clocked water meters date their month-end values (storage 2: on 30 November, the
    # one of 1 October) with their own time (type F); set-day values with the day (type G).
    stamped = by_key["meter-2", "2026-10-01"]
    assert stamped["meter_time"] == "00:00:00" and stamped["offset"] == 0
    assert "meter_time" not in by_key["meter-2", "2026-11-01"]
    for body in (stamped, by_key["meter-1", "2026-12-01"], by_key["heat-10", "2026-11-01"]):
        assert_valid("idx.json", body)
    events = [m.body for m in observer.messages if m.topic.endswith("/evt")]
    assert not [e for e in events if str(e.get("type", "")).startswith(("meter.", "index."))]

    rows = export(path, "2026-11")
    assert sorted(r["device"] for r in rows) == sorted(meters)  # one line per meter
    wired = {m.primary: m for m in building.mbus.bus}
    for row in rows:
        assert row["start_provenance"] == "meter 2026-11-01", row
        assert row["end_provenance"] == "meter 2026-12-01", row
        assert row["start_mid"] == next(iter(mids[row["device"], "2026-11-01"]))
        assert row["end_mid"] == next(iter(mids[row["device"], "2026-12-01"]))
        assert row["dwelling"] and row["medium"] and row["meter"]
        # Exactly what the meter froze at each month start, and their difference.
        sim = wired[int(row["device"].split("-")[1])]
        scale = "0.001" if row["unit"] == "m3" else "1"
        start, end = sim.frozen[NOV1], sim.frozen[DEC1]
        assert row["start_index"] == exact(start, scale) and row["end_index"] == exact(end, scale)
        assert row["consumption"] == exact(end - start, scale) and end > start
    heat = next(r for r in rows if r["device"] == "heat-10")
    assert heat["unit"] == "Wh" and heat["senml_unit"] == "J"
    assert float(heat["consumption_senml"]) == float(heat["consumption"]) * 3600


@pytest.mark.timeout(150)
def test_batigate_demo_then_meters_export_bills_last_month(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    month = last_month(time.time(), "Europe/Paris")
    demo = subprocess.run([sys.executable, "-m", "agent", "demo", "--seconds", "15", "--keep",
                           str(kept)], capture_output=True, text=True, timeout=120, check=False)
    assert demo.returncode == 0, demo.stderr[-2000:]
    config = kept / "gateway.yaml"
    assert f"batigate meters export --config {config} --month {month} --csv" in " ".join(
        demo.stdout.split())
    rows = export(config, month)
    year, number = map(int, month.split("-"))
    following = f"{year + number // 12}-{number % 12 + 1:02d}"
    assert len(rows) == 14 and len({r["device"] for r in rows}) == 14
    for row in rows:
        assert row["start_provenance"] == f"meter {month}-01", row
        assert row["end_provenance"] == f"meter {following}-01", row
        assert Decimal(row["end_index"]) - Decimal(row["start_index"]) == Decimal(
            row["consumption"]) > 0
    # --keep refuses a folder that already holds a demo: its outbox would not match.
    again = subprocess.run([sys.executable, "-m", "agent", "demo", "--seconds", "1", "--keep",
                            str(kept)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2 and "not empty" in " ".join(again.stdout.split()), again.stdout
