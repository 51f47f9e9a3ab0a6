"""One meter's boundary indexes, over weeks of a controlled clock that crosses the October clock
change, against the simulated M-Bus water meter (its own integral of the flow is the truth) read
through the real codec and mapping."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from agent.billing import boundaries
from agent.sdk.models import PointValue
from drivers.mbus.simulator import WaterMeter
from tests.billing.helpers import PARIS, Rig, paris, read

QUARTER = 900.0


def by_date(rig: Rig) -> dict[str, dict]:  # type: ignore[type-arg]
    dates = [r["date"] for r in rig.indexes]
    assert len(dates) == len(set(dates)), "a boundary produced twice"
    return {r["date"]: r for r in rig.indexes}


def m3(litres: int) -> str:
    return f"{Decimal(litres) / 1000:.3f}"


def test_boundaries_of_a_month_with_the_clock_change() -> None:
    days = boundaries.between(paris(2026, 10, 24, 12), paris(2026, 10, 27, 12), PARIS)
    assert [d.isoformat() for _, d in days] == ["2026-10-25", "2026-10-26", "2026-10-27"]
    assert days[1][0] - days[0][0] == 25 * 3600  # Sunday 25 October 2026: back to winter time
    spring = boundaries.between(paris(2026, 3, 28, 12), paris(2026, 3, 30, 12), PARIS)
    assert spring[1][0] - spring[0][0] == 23 * 3600
    assert boundaries.iso(days[2][0], PARIS) == "2026-10-27T00:00:00+01:00"


def test_every_midnight_once_over_six_weeks_with_the_clock_change() -> None:
    start, end = paris(2026, 10, 20, 12) + 7, paris(2026, 12, 3, 12)
    rig = Rig(start)
    rig.run(start, end, QUARTER)
    found = by_date(rig)
    first = date(2026, 10, 21)
    # First sight on 20 October: the two month starts the meter keeps are backfilled from it.
    expected = ["2026-09-01", "2026-10-01"] + [
        (first + timedelta(days=i)).isoformat() for i in range(44)]
    assert list(found) == expected
    for day, record in found.items():
        instant = boundaries.midnight(date.fromisoformat(day), PARIS)
        assert record["b"] == instant and record["at"].startswith(f"{day}T00:00:00+0")
        if record["month"]:
            # The meter's own set-day value, dated that day, exactly what it stored.
            assert record["src"] == "meter" and record["meter_date"] == day
            assert record["raw"]["digits"] == str(rig.litres(instant))
        else:
            assert record["src"] == "reading" and record["offset"] == 7.0
            assert record["raw"]["digits"] == str(rig.litres(instant + 7))
        assert record["raw"]["unit"] == "m3" and record["raw"]["scale"] == "0.001"
        assert record["x"] == m3(int(record["raw"]["digits"]))
        assert record["v"] == float(Decimal(record["raw"]["digits"]) / 1000)
        assert record["meter"] == "21000001"
    assert [d for d, r in found.items() if r["month"]] == [
        "2026-09-01", "2026-10-01", "2026-11-01", "2026-12-01"]
    # The 25-hour day: its consumption is 25 hours of water, from the published indexes.
    long_day = found["2026-10-26"]["consumption"]["day"]
    assert long_day["from"] == "2026-10-25"
    assert Decimal(long_day["x"]) == Decimal(found["2026-10-26"]["x"]) - Decimal(
        found["2026-10-25"]["x"])
    assert found["2026-10-26"]["b"] - found["2026-10-25"]["b"] == 25 * 3600
    month = found["2026-12-01"]["consumption"]["month"]
    assert month["from"] == "2026-11-01" and month["u"] == "m3" and month["xu"] == "m3"
    assert month["x"] == m3(rig.litres(paris(2026, 12, 1)) - rig.litres(paris(2026, 11, 1)))
    october = found["2026-11-01"]["consumption"]["month"]  # from the backfilled 1 October
    assert october["from"] == "2026-10-01"
    assert october["x"] == m3(rig.litres(paris(2026, 11, 1)) - rig.litres(paris(2026, 10, 1)))
    assert not rig.events


def test_gateway_off_over_a_month_start_uses_the_meters_stored_value() -> None:
    start = paris(2026, 10, 30, 12) + 7
    rig = Rig(start)
    rig.run(start, paris(2026, 10, 31, 20), QUARTER)
    rig.restart()  # powered off from 20:00 on the 31st ...
    back = paris(2026, 11, 2, 9, 3)
    rig.at(back)  # ... to 09:03 on 2 November
    found = by_date(rig)
    month = found["2026-11-01"]
    assert month["src"] == "meter" and month["meter_date"] == "2026-11-01"
    assert month["raw"]["digits"] == str(rig.litres(paris(2026, 11, 1)))
    day = found["2026-11-02"]
    assert day["src"] == "interpolated"
    before, after = day["before"], day["after"]
    assert after["t"] == back and after["raw"]["digits"] == str(rig.litres(back))
    assert before["raw"]["digits"] == str(rig.litres(before["t"]))
    span = int(after["raw"]["digits"]) - int(before["raw"]["digits"])
    share = (day["b"] - before["t"]) / (after["t"] - before["t"])
    assert int(day["raw"]["digits"]) == round(int(before["raw"]["digits"]) + span * share)


def test_without_stored_values_an_outage_over_a_month_start_is_interpolated() -> None:
    start = paris(2026, 10, 30, 12) + 7
    rig = Rig(start, history=0)
    rig.run(start, paris(2026, 10, 31, 20), QUARTER)
    rig.at(paris(2026, 11, 1, 9))
    record = by_date(rig)["2026-11-01"]
    assert record["src"] == "interpolated" and record["month"]
    truth = rig.litres(paris(2026, 11, 1))
    low, high = int(record["before"]["raw"]["digits"]), int(record["after"]["raw"]["digits"])
    assert low <= int(record["raw"]["digits"]) <= high and low <= truth <= high


def test_a_meter_replaced_mid_month_is_reported_and_the_month_spans_both() -> None:
    start = paris(2026, 10, 31, 12) + 7
    rig = Rig(start)
    rig.run(start, paris(2026, 11, 15, 10), QUARTER)
    old_last = rig.litres(rig.clock.now)
    nov1 = rig.litres(paris(2026, 11, 1))  # the old meter's index at the month start
    swap = paris(2026, 11, 15, 10, 30) + 7
    rig.clock.now = swap
    rig.meter = WaterMeter(1, "21000099", "SAP", 0x15, 0x16, rig.clock, daily_litres=320,
                           base_litres=4, tz="Europe/Paris")
    rig.run(swap, paris(2026, 12, 1, 1), QUARTER)
    replaced = [e for e in rig.events if e["type"] == "meter.replaced"]
    assert len(replaced) == 1 and replaced[0]["reason"] == "new meter id"
    assert replaced[0]["old"]["meter"] == "21000001"
    assert replaced[0]["old"]["last"]["raw"]["digits"] == str(old_last)
    assert replaced[0]["new"] == {"meter": "21000099", "first": {
        **replaced[0]["new"]["first"], "raw": {"digits": "4", "scale": "0.001", "unit": "m3"}}}
    assert replaced[0]["dwelling"] == "A-011"
    found = by_date(rig)
    assert found["2026-11-15"]["meter"] == "21000001" and found["2026-11-16"]["meter"] == "21000099"
    dec1 = rig.litres(paris(2026, 12, 1))
    month = found["2026-12-01"]["consumption"]["month"]
    assert month["x"] == m3((old_last - nov1) + (dec1 - 4))
    assert found["2026-12-01"]["src"] == "meter"  # the new meter's own set-day value
    assert not [e for e in rig.events if e["type"] == "index.decrease"]


def test_an_index_that_goes_down_is_reported_once_and_never_billed() -> None:
    start = paris(2026, 11, 3, 12) + 7
    rig = Rig(start)
    rig.run(start, paris(2026, 11, 4, 23, 20), QUARTER)  # last good poll 23:15
    bad_from = rig.clock.now + QUARTER
    for step in range(4):  # 23:30 to 00:15 read 2 m3 lower (a meter fault, a swapped cable)
        t = bad_from + step * QUARTER
        rig.clock.now = t
        values = [PointValue(v.name, v.value, v.quality, v.unit,
                             raw=(str(rig.litres(t) - 2000), "0.001", "m3"))
                  if v.name == "volume" else v for v in read(rig.meter)]
        rig.at(t, values)
    rig.run(bad_from + 4 * QUARTER, paris(2026, 11, 6, 2), QUARTER)
    drops = [e for e in rig.events if e["type"] == "index.decrease"]
    assert len(drops) == 1
    assert int(drops[0]["now"]["raw"]["digits"]) < int(drops[0]["last"]["raw"]["digits"])
    found = by_date(rig)
    nov5 = found["2026-11-05"]
    # Midnight fell among the bad polls: the index comes from the good readings around them.
    assert nov5["src"] == "interpolated"
    assert int(nov5["before"]["raw"]["digits"]) == rig.litres(nov5["before"]["t"])
    assert int(nov5["after"]["raw"]["digits"]) == rig.litres(nov5["after"]["t"])
    counts = [int(found[d]["raw"]["digits"]) for d in sorted(found)]
    assert counts == sorted(counts)
    assert not [e for e in rig.events if e["type"] == "meter.replaced"]


def synthetic(litres: int, t: float, meter: str = "77") -> list[PointValue]:
    return [PointValue("volume", litres / 1000, raw=(f"{litres:08d}", "0.001", "m3")),
            PointValue("fabrication_no", int(meter))]


def test_a_declared_rollover_is_not_a_decrease() -> None:
    rig = Rig(paris(2026, 11, 1, 12))
    rig.spec = rig.spec.__class__(**{**{f: getattr(rig.spec, f) for f in rig.spec.__slots__},
                                     "rollover": 100_000_000})
    rig.restart()
    t, litres = paris(2026, 11, 1, 12), 99_998_000
    for _ in range(2 * 96):
        rig.at(t, synthetic(litres % 100_000_000, t))
        t += QUARTER
        litres += 30
    assert [e["type"] for e in rig.events] == ["index.rollover"]
    found = by_date(rig)
    day = found["2026-11-03"]["consumption"]["day"]
    assert day["x"] == "2.880"  # 96 quarter hours x 30 l, across the wrap
    assert found["2026-11-03"]["raw"]["digits"] < found["2026-11-02"]["raw"]["digits"]


def test_an_index_restarting_near_zero_is_a_replaced_meter() -> None:
    rig = Rig(paris(2026, 11, 1, 12))
    rig.at(paris(2026, 11, 1, 12), [synthetic(500_000, 0)[0]])
    rig.at(paris(2026, 11, 1, 13), [synthetic(120, 0)[0]])
    assert [e["type"] for e in rig.events] == ["meter.replaced"]
    assert rig.events[0]["reason"] == "index restarted near zero"


def test_reverse_flow_and_invalid_dates_are_reported_once() -> None:
    rig = Rig(paris(2026, 11, 1, 12))
    for hour in range(3):
        t = paris(2026, 11, 1, 12 + hour)
        values = [PointValue("volume_flow", -0.0001, unit="m3/s") if v.name == "volume_flow" else
                  PointValue("date_s1", None) if v.name == "date_s1" else
                  PointValue("date_time", "2024-01-01T00:00:00") if v.name == "date_time" else v
                  for v in read(rig.meter)]
        rig.at(t, values)
    kinds = sorted(e["type"] for e in rig.events)
    assert kinds == ["meter.date_invalid", "meter.date_invalid", "meter.reverse_flow"]
    reasons = {e["point"]: e["reason"] for e in rig.events if e["type"] == "meter.date_invalid"}
    assert "has no valid date" in reasons["date_s1"] and "off the gateway's" in reasons["date_time"]
