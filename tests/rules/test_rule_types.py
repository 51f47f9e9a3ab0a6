"""Rule-type details the golden cases do not show: local time, meter quirks, bounded memory,
and a fuzz of every type through restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sdk.models import DeviceState
from rules.builtin import counter
from rules.builtin.calendar import window_at
from rules.engine import RuleEngine
from tests.rules.harness import reading, rule

PARIS = ZoneInfo("Europe/Paris")


def paris(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


def test_night_window_is_local_time_and_may_cross_midnight() -> None:
    window = (22 * 60, 6 * 60)
    start, end = window_at(paris("2026-03-29T01:30"), window, PARIS)  # type: ignore[misc]
    # the night of the spring change is one hour shorter
    assert (start, end) == (paris("2026-03-28T22:00"), paris("2026-03-29T06:00"))
    assert end - start == 7 * 3600
    assert window_at(paris("2026-03-29T12:00"), window, PARIS) is None
    start, _ = window_at(paris("2026-03-29T23:00"), window, PARIS)  # type: ignore[misc]
    assert start == paris("2026-03-29T22:00")


def test_leak_night_in_the_building_time_zone() -> None:
    engine = RuleEngine([rule(id="leak", type="leak", point="m/v", night="01:00-05:00")],
                        tz=PARIS)
    t0 = paris("2026-01-10T00:00")
    events = []
    for hour in range(7):  # the index moves every hour: 01:00-05:00 Paris is 00:00-04:00 UTC
        now = t0 + hour * 3600
        events += engine.tick(now)
        events += engine.on_reading(reading("m/v", 10 + hour / 100, now, unit="m3"), now)
    (raised,) = events
    assert (raised.since, raised.ts) == (paris("2026-01-10T01:00"), paris("2026-01-10T05:00"))


def test_consumption_skips_a_day_without_readings_and_survives_a_meter_swap() -> None:
    engine = RuleEngine([rule(id="c", type="consumption", point="m/v", k=2, days=3)], tz=UTC)
    day = 86400
    index = 100.0
    events = []
    # day 0 partial; days 1-3 use 1 m3; day 4 unread; day 5 uses 5 m3 but follows an unread
    # day, so it is not judged; day 6 uses 1 m3 on a new meter starting at 0.
    plan = {1: 1.0, 2: 1.0, 3: 1.0, 5: 5.0}
    for d in range(7):
        events += engine.tick(d * day)
        if d == 4:
            continue
        if d == 6:
            index = 0.0  # meter replaced
        index += plan.get(d, 1.0 if d == 6 else 0.0)
        now = d * day + 80000
        events += engine.on_reading(reading("m/v", index, now, unit="m3"), now)
    events += engine.tick(7 * day)
    assert events == []
    rule_state = engine.export_state()["rules"]["c"]["state"]
    assert rule_state["history"] == [1.0, 1.0, 1.0] and rule_state["limit"] == 2.0


def test_consumption_raises_on_the_day_itself() -> None:
    engine = RuleEngine([rule(id="c", type="consumption", point="m/v", k=2, days=3,
                              min_volume="500 l")], tz=UTC)
    day, index = 86400, 0.0
    for d in range(4):
        engine.tick(d * day)
        index += 0.3
        engine.on_reading(reading("m/v", index, d * day + 43200, unit="m3"), d * day + 43200)
    engine.tick(4 * day)
    # 0.7 m3 is above 2 x 0.3 but not above min_volume... 0.5: raised
    (event,) = engine.on_reading(reading("m/v", index + 0.7, 4 * day + 3600), 4 * day + 3600)
    assert (event.kind, event.since, event.value) == ("raised", 4 * day, 0.7)


def test_availability_outages_stay_bounded_and_exact() -> None:
    engine = RuleEngine([rule(id="a", type="availability", point="l/fault", max_percent=50,
                              window="30d")], tz=UTC)
    now = 0.0
    for _ in range(counter._MAX_INTERVALS + 500):  # a flapping contact: 10 s down every minute
        engine.on_reading(reading("l/fault", True, now), now)
        engine.on_reading(reading("l/fault", False, now + 10), now + 10)
        now += 60
    state = engine.export_state()["rules"]["a"]["state"]
    assert len(state["outages"]) <= counter._MAX_INTERVALS
    assert sum(d for _, _, d in state["outages"]) == (counter._MAX_INTERVALS + 500) * 10


def test_counter_rate_memory_is_bounded_by_max_starts() -> None:
    engine = RuleEngine([rule(id="p", type="counter_rate", point="p/run", max_starts=5)],
                        tz=UTC)
    for i in range(2000):
        engine.on_reading(reading("p/run", i % 2 == 0, i), float(i))
    assert len(engine.export_state()["rules"]["p"]["state"]["starts"]) == 6


ALL = [
    rule(id="t", type="threshold", point="d/x", below=40, clear_above=60, for_="30s",
         clear_for="30s"),
    rule(id="h", type="held", point="d/b", value=True, for_="2m", latch=True),
    rule(id="s", type="stale", point="d/*", for_="5m"),
    rule(id="c", type="comm_lost", device="d", for_="1m"),
    rule(id="q", type="bad_quality", point="d/*", for_="1m"),
    rule(id="r", type="counter_rate", point="d/b", max_starts=3, window="20m", max_on="2m"),
    rule(id="a", type="availability", point="d/b", max_down="3m", max_percent=30,
         window="1h"),
    rule(id="l", type="leak", point="d/x", night="00:00-00:30", for_="10m", min_flow=0.01),
    rule(id="k", type="consumption", point="d/x", k=1.5, days=3),
]

actions = st.lists(st.tuples(
    st.integers(min_value=0, max_value=900),
    st.sampled_from(["x", "b", "state", "bad", "tick", "restart", "ack", "maint"]),
    st.integers(min_value=0, max_value=100)), max_size=80)


@settings(max_examples=80, deadline=None)
@given(actions=actions)
def test_every_rule_type_keeps_the_lifecycle_straight(actions: list[tuple[int, str, int]]) -> None:
    engine = RuleEngine(ALL, tz=UTC)
    now, events = 0.0, []
    for gap, what, n in actions:
        now += gap
        wakeups = 0
        while (deadline := engine.next_deadline()) is not None and deadline <= now:
            events += engine.tick(deadline)
            wakeups += 1
            assert wakeups < 200, "the engine keeps waking up for nothing"
        if what == "x":
            events += engine.on_reading(reading("d/x", float(n), now), now)
        elif what == "b":
            events += engine.on_reading(reading("d/b", n % 2 == 0, now), now)
        elif what == "bad":
            events += engine.on_reading(reading("d/x", None, now, quality="bad"), now)
        elif what == "state":
            events += engine.on_device_state("d", [DeviceState.OK, DeviceState.DOWN][n % 2], now)
        elif what == "restart":
            engine = RuleEngine(ALL, json.loads(json.dumps(engine.export_state())), tz=UTC)
            assert engine.restore_problems == []
        elif what == "ack":
            events += engine.ack("thsrcqakl"[n % 9] if n % 9 != 1 else "h", "tech", now)
        elif what == "maint":
            events += engine.set_maintenance("d", now + n * 10 if n % 3 else None, now)
        else:
            events += engine.tick(now)
    raised: set[str] = set()
    for event in events:
        assert event.ts >= event.since or event.kind == "suppressed"
        if event.kind == "raised":
            assert event.alarm not in raised, f"second raise of {event.alarm}"
            raised.add(event.alarm)
        elif event.kind == "cleared":
            assert event.alarm in raised, f"clear of {event.alarm} that was not raised"
            raised.discard(event.alarm)
        elif event.kind == "acked":
            assert event.alarm in raised
    assert {a["alarm"] for a in engine.active()} == raised


def test_counter_rate_with_both_limits_sleeps_between_deadlines() -> None:
    engine = RuleEngine([rule(id="r", type="counter_rate", point="p/run", max_starts=2,
                              window="1h", max_on="5m")], tz=UTC)
    events = []
    for i, state in enumerate([False, True, False, True, False, True]):  # 3 starts
        events += engine.on_reading(reading("p/run", state, i * 10.0), i * 10.0)
    assert [(e.kind, e.unit) for e in events] == [("raised", "count")]
    wakeups = 0
    # still running past max_on, while too many starts: nothing to do until the window moves
    while (deadline := engine.next_deadline()) is not None and deadline <= 3000:
        events += engine.tick(deadline)
        wakeups += 1
    assert wakeups <= 2 and len(events) == 1
