"""Billing with the real SQLite outbox: each boundary index is committed with the state that says
it was made, in one transaction, so a crash in the middle of a catch-up neither loses one nor
makes one twice; the idx lane comes after events and before telemetry and the overflow policy
never drops it; re-sends keep the first mid; the history is pruned after billing.keep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import loader as config_mod
from agent.billing import Billing
from agent.billing.export import month_rows, open_history
from agent.store.outbox import PRIO_EVENT, PRIO_INDEX, PRIO_TELEMETRY, Outbox
from tests.billing.helpers import Clock, device, paris, read, water_meter

CONFIG = """
gateway: {id: gw-1, site: res-test}
mqtt: {host: 127.0.0.1, tls: false}
buffer: {path: %s}
billing: {timezone: Europe/Paris, keep: %s}
buses: [{id: meters, driver: mbus, port: "socket://127.0.0.1:1"}]
devices:
  - {id: wm-a011, bus: meters, address: 1, dwelling: A-011, medium: cold_water}
"""


class Crash(Exception):
    pass


def rig(tmp_path: Path, keep: str = "400d", max_bytes: int = 10**9) -> tuple[Any, Outbox, Billing]:
    conf = config_mod.parse(CONFIG % (tmp_path / "outbox.db", keep))
    clock = Clock(0.0)
    outbox = Outbox(conf.buffer.path, max_bytes=max_bytes, commit_interval=1.0, clock=clock)
    return conf, outbox, Billing(conf, outbox, session=outbox.next_session(), clock=clock)


def rows(outbox: Outbox, prio: int) -> list[dict[str, Any]]:
    found = outbox._db.execute("SELECT mid, body FROM outbox WHERE prio = ? ORDER BY seq",
                               (prio,)).fetchall()
    return [{"mid": mid, **json.loads(body)} for mid, body in found]


def test_a_crash_in_the_middle_of_a_catch_up_loses_nothing_and_repeats_nothing(
        tmp_path: Path) -> None:
    conf, outbox, billing = rig(tmp_path)
    meter = water_meter(Clock(0.0))
    dev = device()
    for t in (paris(2026, 11, 3, 22), paris(2026, 11, 3, 23)):
        meter.clock.now = billing.clock.now = t  # type: ignore[attr-defined]
        billing.observe(dev, read(meter), t)
    outbox.commit()
    back = paris(2026, 11, 7, 8)  # off for three midnights
    meter.clock.now = back  # type: ignore[attr-defined]
    values = read(meter)
    real_enqueue = outbox.enqueue
    made: list[int] = []

    def dies_after_two(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if len(made) == 2:
            raise Crash  # SIGKILL between two indexes of the catch-up
        made.append(1)
        return real_enqueue(*args, **kwargs)

    outbox.enqueue = dies_after_two  # type: ignore[method-assign]
    with pytest.raises(Crash):
        billing.observe(dev, values, back)
    outbox._db.close()  # no clean close: what was not committed is gone
    outbox = Outbox(conf.buffer.path, max_bytes=10**9, commit_interval=1.0, clock=Clock(back))
    billing = Billing(conf, outbox, session=outbox.next_session(), clock=Clock(back))
    billing.observe(dev, values, back)
    later = back + 900
    meter.clock.now = later  # type: ignore[attr-defined]
    billing.observe(dev, read(meter), later)
    every = rows(outbox, PRIO_INDEX)
    # The two month starts the meter keeps, backfilled at first sight, then the catch-up.
    assert [(r["date"], r["src"]) for r in every[:2]] == [("2026-10-01", "meter"),
                                                         ("2026-11-01", "meter")]
    idx = every[2:]
    assert [r["date"] for r in idx] == ["2026-11-04", "2026-11-05", "2026-11-06", "2026-11-07"]
    assert len({r["mid"] for r in every}) == 6
    assert all(r["src"] == "interpolated" for r in idx)
    stored = billing.history("wm-a011", paris(2026, 11, 2), paris(2026, 11, 30))
    assert [(s["date"], s["mid"]) for s in stored] == [(r["date"], r["mid"]) for r in idx]
    assert "cum" in stored[0] and "cum" not in idx[0]


def test_lanes_overflow_resend_and_pruning(tmp_path: Path) -> None:
    conf, outbox, billing = rig(tmp_path, keep="2d", max_bytes=60_000)
    meter = water_meter(Clock(0.0))
    dev = device()
    t = paris(2026, 11, 1, 12)
    while t < paris(2026, 11, 8, 1):
        meter.clock.now = billing.clock.now = t  # type: ignore[attr-defined]
        billing.observe(dev, read(meter), t)
        outbox.enqueue("dev/x/tm", {"e": [{"bn": "urn:dev:bgw:gw-1:x:", "bt": t, "n": "p",
                                           "v": 1.5, "s": "x" * 200}]},
                       prio=PRIO_TELEMETRY, sess=1, ts=t)
        outbox.commit()
        t += 900
    outbox.enqueue("evt", {"type": "device.up", "dev": "x"}, prio=PRIO_EVENT, sess=1, ts=t)
    assert outbox.dropped > 0  # the budget was too small for the telemetry ...
    idx = rows(outbox, PRIO_INDEX)
    assert [r["date"] for r in idx] == ["2026-10-01"] + [
        f"2026-11-0{d}" for d in range(1, 9)]  # ... never idx (two backfilled at first sight)
    batch = outbox.peek(10)
    assert [m.prio for m in batch][:2] == [PRIO_EVENT, PRIO_INDEX]
    assert [m.prio for m in batch] == sorted([m.prio for m in batch],
                                             key=[PRIO_EVENT, PRIO_INDEX, PRIO_TELEMETRY].index)
    outbox.ack([m for m in outbox.peek(100) if m.prio == PRIO_INDEX])
    outbox.commit()
    assert rows(outbox, PRIO_INDEX) == []
    # Pruned after keep: 2 days back from the last boundary.
    kept = billing.history("wm-a011", 0, paris(2026, 12, 1))
    outbox.commit()
    kept = billing.history("wm-a011", 0, paris(2026, 12, 1))
    assert [k["date"] for k in kept] == ["2026-11-06", "2026-11-07", "2026-11-08"]
    again = billing.resend("wm-a011", paris(2026, 11, 7), paris(2026, 11, 8))
    resent = rows(outbox, PRIO_INDEX)
    assert [r["mid"] for r in resent] == [k["mid"] for k in kept[1:]] == [a["mid"] for a in again]
    assert all(r["resent"] is True for r in resent)


def test_export_rows_of_a_month(tmp_path: Path) -> None:
    conf, outbox, billing = rig(tmp_path)
    meter = water_meter(Clock(0.0))
    t = paris(2026, 10, 31, 18)
    while t < paris(2026, 12, 1, 6):
        meter.clock.now = billing.clock.now = t  # type: ignore[attr-defined]
        billing.observe(device(), read(meter), t)
        t += 3 * 3600
    outbox.close()
    db = open_history(Path(conf.buffer.path))
    [row] = month_rows(db, conf, "2026-11")
    assert row["dwelling"] == "A-011" and row["medium"] == "cold_water"
    assert row["meter"] == "21000001"
    start, end = row["start"], row["end"]
    assert start["provenance"] == "meter 2026-11-01" and end["provenance"] == "meter 2026-12-01"
    litres = int(meter.litres(paris(2026, 12, 1))) - int(meter.litres(paris(2026, 11, 1)))
    assert row["consumption"]["x"] == f"{litres / 1000:.3f}" and row["consumption"]["unit"] == "m3"
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_rows(db, conf, "11/2026")


def test_readings_before_the_clock_is_real_make_no_boundary(tmp_path: Path) -> None:
    """A gateway without RTC polls at 1970 until NTP: those readings would put every midnight
    since 1970 between two readings; billing waits for the real clock."""
    conf, outbox, _ = rig(tmp_path)
    real = {"synced": False}
    billing = Billing(conf, outbox, session=1, clock=Clock(0.0), synced=lambda: real["synced"])
    meter = water_meter(Clock(0.0))
    meter.clock.now = 5000.0  # type: ignore[attr-defined]
    assert billing.observe(device(), read(meter), 5000.0) == []
    real["synced"] = True
    for t in (paris(2026, 11, 3, 23, 55), paris(2026, 11, 4, 0, 5)):
        meter.clock.now = t  # type: ignore[attr-defined]
        billing.observe(device(), read(meter), t)
    # First sight at 23:55 backfills the month starts the meter keeps; then the midnight.
    assert [r["date"] for r in rows(outbox, PRIO_INDEX)] == ["2026-10-01", "2026-11-01",
                                                             "2026-11-04"]
    assert billing.unsynced_skipped == 1
