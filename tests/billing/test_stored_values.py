"""A meter's own dated stored values (set-day, month-end) are the boundary index (`src: meter`),
before any gateway reading and any interpolation: when the gateway first sees the meter (the
boundaries before its first reading are backfilled), across a month boundary it was polling
through, and when it was off across one. An index already kept is never made again. A stored
date-time puts the value on its own midnight (not 00:00 of its date), and a stored value in
another unit than the index is reported, not skipped silently.

The clock is the tests' fake clock (tests/clocks.py), moved over the 1 December 2026 boundary;
the meters are the simulated M-Bus meters read through the real codec and mapping."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.billing import Billing
from agent.billing.index import MeterIndex
from agent.billing.meters import spec_of
from agent.config import loader as config_mod
from agent.sdk.models import PointValue, Quality
from agent.store.outbox import PRIO_INDEX, Outbox
from drivers.mbus import mapping
from drivers.mbus.codec import decode_frame
from drivers.mbus.simulator import WaterMeter
from tests.billing.helpers import PARIS, device, paris, read
from tests.clocks import FakeClock
from tests.integration.test_schemas import assert_valid

DEC1 = paris(2026, 12, 1)
NOV1 = paris(2026, 11, 1)


def meter(clock: FakeClock, *, stamped: bool = False, history: int = 3) -> WaterMeter:
    """A cold-water meter on the wall for years (`past`), keeping a set-day value and two
    month-end values; `stamped`: it dates the month-end values with a date-time (type F)."""
    return WaterMeter(1, "21000001", "SAP", 0x15, 0x16, clock, daily_litres=320,
                      base_litres=152_340, history_months=history, tz="Europe/Paris",
                      stamped=stamped, past=True)


def truth(sim: WaterMeter, instant: float) -> str:
    """What the meter itself stored for that month start (its frozen register)."""
    return str(sim.frozen[instant])


class Meter:
    """One MeterIndex fed by one simulated meter, both on the same fake clock."""

    def __init__(self, clock: FakeClock, sim: WaterMeter, max_offset: float = 900.0) -> None:
        self.clock = clock
        self.sim = sim
        spec = spec_of(device())
        assert spec is not None
        self.index = MeterIndex(spec, PARIS, max_offset)
        self.indexes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def at(self, t: float, values: list[PointValue] | None = None) -> int:
        self.clock.now = t
        out = self.index.observe({v.name: v for v in values or read(self.sim)}, t)
        for record, _ in out.indexes:
            assert record["date"] not in self.indexes, f"{record['date']} made twice"
            self.indexes[record["date"]] = record
        self.events += out.events
        return out.other_unit


def test_first_sight_backfills_the_boundaries_the_meter_kept_then_prefers_its_stored_value(
        ) -> None:
    clock = FakeClock(paris(2026, 11, 30, 23, 50))
    sim = meter(clock)
    rig = Meter(clock, sim)
    rig.at(clock.now)  # the gateway sees the meter for the first time, ten minutes before 1 Dec
    assert list(rig.indexes) == ["2026-09-01", "2026-10-01", "2026-11-01"]
    for day, record in rig.indexes.items():
        instant = paris(*map(int, day.split("-")))  # type: ignore[arg-type]
        assert record["src"] == "meter" and record["meter_date"] == day and record["month"]
        assert record["raw"] == {"digits": truth(sim, instant), "scale": "0.001", "unit": "m3"}
        assert record["b"] == instant
    # The month of October billed from the meter's own two values, exactly.
    october = rig.indexes["2026-11-01"]["consumption"]["month"]
    used = int(truth(sim, NOV1)) - int(truth(sim, paris(2026, 10, 1)))
    assert october["from"] == "2026-10-01" and october["x"] == f"{Decimal(used) / 1000:.3f}"
    assert used > 0  # the meter counted before the simulation: a real month, not zero
    # Over midnight: a reading 5 minutes after it would do (max_offset 15 min), but the meter's
    # own set-day value comes first.
    rig.at(paris(2026, 12, 1, 0, 5))
    dec1 = rig.indexes["2026-12-01"]
    assert dec1["src"] == "meter" and dec1["meter_date"] == "2026-12-01"
    assert dec1["raw"]["digits"] == truth(sim, DEC1) == str(int(sim.litres(DEC1)))
    assert "offset" not in dec1 and "meter_time" not in dec1
    november = dec1["consumption"]["month"]
    assert november["from"] == "2026-11-01"
    assert november["x"] == f"{Decimal(int(truth(sim, DEC1)) - int(truth(sim, NOV1))) / 1000:.3f}"
    assert not rig.events


def test_off_for_a_month_the_meters_stored_values_give_both_month_starts() -> None:
    clock = FakeClock(paris(2026, 10, 31, 20))
    sim = meter(clock, stamped=True)
    rig = Meter(clock, sim)
    rig.at(clock.now)
    rig.at(paris(2026, 10, 31, 20, 15))
    # Off from 20:15 on 31 October to 09:00 on 2 December. Back, the meter's storage 1 is its
    # set-day value of 1 December (dated with the day, type G); storage 2 its month-end value of
    # 1 November, stamped by its own clock 2026-11-01T00:00 (type F).
    rig.at(paris(2026, 12, 2, 9))
    nov1, dec1 = rig.indexes["2026-11-01"], rig.indexes["2026-12-01"]
    assert nov1["src"] == "meter" and nov1["raw"]["digits"] == truth(sim, NOV1)
    assert nov1["meter_date"] == "2026-11-01" and nov1["meter_time"] == "00:00:00"
    assert nov1["offset"] == 0
    assert dec1["src"] == "meter" and dec1["raw"]["digits"] == truth(sim, DEC1)
    assert dec1["meter_date"] == "2026-12-01" and "meter_time" not in dec1
    november = dec1["consumption"]["month"]
    assert november["x"] == f"{Decimal(int(truth(sim, DEC1)) - int(truth(sim, NOV1))) / 1000:.3f}"
    # The days between: no stored value, so interpolated and flagged, between the nearest known
    # counts: the meter's own 1 November and 1 December values, and the reading of 2 December.
    days = [d for d in rig.indexes if "2026-11-02" <= d <= "2026-12-02" and d != "2026-12-01"]
    assert len(days) == 30
    for day in days:
        record = rig.indexes[day]
        assert record["src"] == "interpolated"
        if day < "2026-12-01":
            assert record["before"]["t"] == NOV1 and record["after"]["t"] == DEC1
            assert record["before"]["src"] == record["after"]["src"] == "meter"
        else:
            assert record["before"]["t"] == DEC1 and record["after"]["t"] == paris(2026, 12, 2, 9)
            assert "src" not in record["after"]  # the gateway's reading
    counts = [int(rig.indexes[d]["raw"]["digits"]) for d in sorted(rig.indexes)]
    assert counts == sorted(counts)  # never a day that goes down between two stored values
    assert not rig.events


def stored_pair(count: str, scale: str, when: str) -> list[PointValue]:
    return [PointValue("volume_s1", float(Decimal(count) * Decimal(scale)),
                       raw=(count, scale, "m3"), unit="m3"),
            PointValue("date_time_s1", when)]


def current(litres: int) -> PointValue:
    return PointValue("volume", litres / 1000, raw=(f"{litres:08d}", "0.001", "m3"), unit="m3")


def test_a_stored_date_time_is_the_index_of_its_own_midnight_not_of_00_00_of_its_date() -> None:
    clock = FakeClock(paris(2026, 12, 1, 10))
    rig = Meter(clock, meter(clock))
    # A meter that froze its month-end value at 23:58 on 30 November, by its own clock.
    rig.at(clock.now, [current(160_000), *stored_pair("00155000", "0.001",
                                                      "2026-11-30T23:58:00")])
    assert list(rig.indexes) == ["2026-12-01"]  # not 30 November, the date it carries
    record = rig.indexes["2026-12-01"]
    assert record["src"] == "meter" and record["meter_date"] == "2026-11-30"
    assert record["meter_time"] == "23:58:00" and record["offset"] == -120
    assert record["raw"]["digits"] == "00155000"
    # A date-time far from any midnight (a value frozen at noon) is no boundary index.
    clock2 = FakeClock(paris(2026, 12, 1, 10))
    rig2 = Meter(clock2, meter(clock2))
    rig2.at(clock2.now, [current(160_000), *stored_pair("00155000", "0.001",
                                                        "2026-11-30T12:00:00")])
    assert rig2.indexes == {} and not rig2.events


def test_a_stored_value_in_another_unit_is_reported_once_and_not_used() -> None:
    clock = FakeClock(paris(2026, 11, 30, 23, 40))
    rig = Meter(clock, meter(clock))
    # The meter sends its index in litres (0.001 m3) but its set-day value in 10 l steps.
    other = stored_pair("0015500", "0.01", "2026-12-01")
    assert rig.at(clock.now, [current(155_000)]) == 0
    counted = rig.at(paris(2026, 12, 1, 0, 10), [current(155_100), *other])
    counted += rig.at(paris(2026, 12, 1, 0, 25), [current(155_200), *other])
    assert counted == 2  # every poll that could not use it is counted ...
    [event] = rig.events  # ... and reported once
    assert event["type"] == "meter.stored_unit" and event["point"] == "volume_s1"
    assert event["stored"] == {"scale": "0.01", "unit": "m3"}
    assert event["index"] == {"scale": "0.001", "unit": "m3"}
    assert event["meter_date"] == "2026-12-01" and event["dwelling"] == "A-011"
    assert_valid("evt.json", {"v": 1, "gw": "gw-1", "sess": 1, "seq": 1, "hist": False,
                              "mid": "0190d2c4-7f1e-7a51-9c3b-2f6d1e0b9a77", "ts": DEC1,
                              **event})
    record = rig.indexes["2026-12-01"]
    assert record["src"] == "reading" and record["offset"] == 600  # not the 10 l value


# -- with the real outbox: kept once, whatever happens ----------------------------------------

CONFIG = """
gateway: {id: gw-1, site: res-test}
mqtt: {host: 127.0.0.1, tls: false}
buffer: {path: %s}
buses: [{id: meters, driver: mbus, port: "socket://127.0.0.1:1"}]
devices:
  - {id: wm-a011, bus: meters, address: 1, dwelling: A-011, medium: cold_water}
"""


class Crash(Exception):
    pass


def gateway(path: Path, clock: FakeClock) -> tuple[Any, Outbox, Billing]:
    conf = config_mod.parse(CONFIG % path)
    outbox = Outbox(conf.buffer.path, max_bytes=10**9, commit_interval=1.0, clock=clock)
    return conf, outbox, Billing(conf, outbox, session=outbox.next_session(), clock=clock)


def idx_rows(outbox: Outbox) -> list[dict[str, Any]]:
    found = outbox._db.execute("SELECT mid, body FROM outbox WHERE prio = ? ORDER BY seq",
                               (PRIO_INDEX,)).fetchall()
    return [{"mid": mid, **json.loads(body)} for mid, body in found]


def test_an_index_already_kept_is_never_made_again(tmp_path: Path) -> None:
    clock = FakeClock(paris(2026, 11, 30, 23, 50))
    sim = meter(clock)
    conf, outbox, billing = gateway(tmp_path / "outbox.db", clock)
    billing.observe(device(), read(sim), clock.now)
    outbox.commit()
    first = {r["date"]: r["mid"] for r in idx_rows(outbox)}
    assert list(first) == ["2026-09-01", "2026-10-01", "2026-11-01"]
    # Billing forgets the meter (its state gone: restored from an old backup, removed by hand):
    # the next reading is a first sight again, and the same stored values come back.
    outbox.stage_meta({"billing/wm-a011": None})
    outbox.commit()
    billing = Billing(conf, outbox, session=outbox.next_session(), clock=clock)
    clock.now = paris(2026, 11, 30, 23, 55)
    billing.observe(device(), read(sim), clock.now)
    assert billing.kept_existing == 3 and billing.indexes_made == 0
    assert {r["date"]: r["mid"] for r in idx_rows(outbox)} == first  # nothing new, nothing lost
    history = billing.history("wm-a011", 0, DEC1)
    assert {h["date"]: h["mid"] for h in history} == first  # the kept ones are untouched
    clock.now = paris(2026, 12, 1, 0, 5)
    billing.observe(device(), read(sim), clock.now)  # ... and the meter goes on from there
    rows = idx_rows(outbox)
    assert [r["date"] for r in rows][-1] == "2026-12-01" and len(rows) == 4
    assert rows[-1]["src"] == "meter" and rows[-1]["raw"]["digits"] == truth(sim, DEC1)


def test_a_crash_in_the_middle_of_a_backfill_makes_each_index_once(tmp_path: Path) -> None:
    clock = FakeClock(paris(2026, 11, 30, 23, 50))
    sim = meter(clock)
    conf, outbox, billing = gateway(tmp_path / "outbox.db", clock)
    values = read(sim)
    real_enqueue = outbox.enqueue
    made: list[int] = []

    def dies_after_one(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if kwargs.get("prio") == PRIO_INDEX and made:
            raise Crash  # SIGKILL between two backfilled indexes
        made.append(1)
        return real_enqueue(*args, **kwargs)

    outbox.enqueue = dies_after_one  # type: ignore[method-assign]
    with pytest.raises(Crash):
        billing.observe(device(), values, clock.now)
    outbox._db.close()  # no clean close
    outbox = Outbox(conf.buffer.path, max_bytes=10**9, commit_interval=1.0, clock=clock)
    billing = Billing(conf, outbox, session=outbox.next_session(), clock=clock)
    billing.observe(device(), values, clock.now)  # still a first sight: the backfill resumes
    clock.now = paris(2026, 12, 1, 0, 5)
    billing.observe(device(), read(sim), clock.now)
    rows = idx_rows(outbox)
    assert [r["date"] for r in rows] == ["2026-09-01", "2026-10-01", "2026-11-01", "2026-12-01"]
    assert len({r["mid"] for r in rows}) == 4 and all(r["src"] == "meter" for r in rows)


def test_the_water_meter_profile_reads_the_month_end_value_when_the_meter_keeps_one(
        tmp_path: Path) -> None:
    """The profile's month-end points are optional: a meter that keeps only its set-day value
    reads no bad point, and one that dates its month-end value with a date-time is paired."""
    conf = config_mod.parse(CONFIG.replace(
        "dwelling: A-011, medium: cold_water}",
        "dwelling: A-011, medium: cold_water, profile: water-meter}") % (tmp_path / "o.db"))
    [dev] = conf.devices
    spec = spec_of(dev)
    assert spec is not None
    clock = FakeClock(paris(2026, 12, 1, 0, 5))
    for history, stamped, expected in ((1, False, ["2026-12-01"]),
                                       (2, True, ["2026-11-01", "2026-12-01"]),
                                       (2, False, ["2026-11-01", "2026-12-01"])):
        sim = meter(clock, stamped=stamped, history=history)
        values = mapping.pick(dev.points, decode_frame(sim.respond_ud2(True)).records)
        names = {v.name for v in values}
        assert ("month_end_volume" in names) is (history > 1)
        assert all(v.quality is Quality.GOOD for v in values), values
        out = MeterIndex(spec, PARIS, 900.0).observe({v.name: v for v in values}, clock.now)
        assert [r["date"] for r, _ in out.indexes] == expected and not out.events
        assert all(r["src"] == "meter" for r, _ in out.indexes)
        assert [r["raw"]["digits"] for r, _ in out.indexes] == [
            truth(sim, paris(*map(int, d.split("-")))) for d in expected]  # type: ignore[arg-type]
