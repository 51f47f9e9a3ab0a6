"""Hypothesis on threshold hysteresis and the lifecycle around it.

For any series of values, delays, maintenance windows and restarts:
- raised and cleared alternate (never two raises without a clear between);
- nothing is raised while the device is in maintenance;
- a raise happens only `for` after the value went under `below` (and, without `clear_for`,
  before it reached `clear_above`), and a clear only after the value reached `clear_above`;
- at the end, with time enough to settle: raised if the last value is below `below`, not raised
  if it is at or above `clear_above`.
"""

from __future__ import annotations

import json
from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.engine import RuleEngine
from tests.rules.harness import reading, rule

BELOW, CLEAR = 50.0, 60.0

steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=400),  # seconds since the previous step
        st.one_of(st.floats(min_value=0, max_value=100, allow_nan=False),
                  st.sampled_from([BELOW, CLEAR, 49.999, 59.999])),
        st.sampled_from(["reading", "reading", "reading", "tick", "maint", "unmaint",
                         "restart"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, delay=st.sampled_from([None, "1s", "2m", "10m"]),
       clear_for=st.sampled_from([None, "30s", "5m"]), latch=st.booleans())
def test_threshold_lifecycle_invariants(steps: list[tuple[int, float, str]], delay: str | None,
                                        clear_for: str | None, latch: bool) -> None:
    params = {"id": "low", "type": "threshold", "point": "vmc-b/p", "below": BELOW,
              "clear_above": CLEAR, "latch": latch}
    if delay:
        params["for"] = delay
    if clear_for:
        params["clear_for"] = clear_for
    rules = [rule(**params)]
    engine = RuleEngine(rules, tz=UTC)
    now = 0.0
    values: list[tuple[float, float]] = []  # (time, value)
    maintenance_until: float | None = None
    events = []

    def run_until(t: float) -> None:
        while (deadline := engine.next_deadline()) is not None and deadline <= t:
            events.extend((e, maintenance_until) for e in engine.tick(deadline))

    for gap, value, action in steps:
        now += gap
        run_until(now)
        if action == "reading":
            values.append((now, value))
            got = engine.on_reading(reading("vmc-b/p", value, now), now)
        elif action == "tick":
            got = engine.tick(now)
        elif action == "maint":
            maintenance_until = now + 900
            got = engine.set_maintenance("vmc-b", maintenance_until, now)
        elif action == "unmaint":
            got = engine.set_maintenance("vmc-b", None, now)
            maintenance_until = None
        else:
            engine = RuleEngine(rules, json.loads(json.dumps(engine.export_state())), tz=UTC)
            got = engine.tick(now)
        events.extend((e, maintenance_until) for e in got)
        if maintenance_until is not None and maintenance_until <= now:
            maintenance_until = None

    # settle: end maintenance, acknowledge (latch), let every delay run out
    events.extend((e, None) for e in engine.set_maintenance("vmc-b", None, now + 1))
    maintenance_until = None
    events.extend((e, None) for e in engine.ack("low", "t", now + 2))
    run_until(now + 10_000)

    raised = False
    for event, until in events:
        if event.kind == "raised":
            assert not raised, "two raises without a clear between"
            assert until is None or until <= event.ts, "raised during maintenance"
            # the value was below `below` at `since`; without an off-delay it never reached
            # clear_above after (with one, a maintenance end may raise a condition whose
            # off-delay is still running: the debounced condition is still true)
            window = [v for t, v in values if event.since <= t <= event.ts]
            assert window and window[0] < BELOW
            if clear_for is None:
                # a reading stamped exactly at the raise time is taken after the due tick
                assert all(v < CLEAR for t, v in values if event.since <= t < event.ts)
            if delay:
                assert event.ts - event.since >= {"1s": 1, "2m": 120, "10m": 600}[delay]
            raised = True
        elif event.kind == "cleared":
            assert raised, "a clear without a raise"
            assert any(v >= CLEAR for t, v in values if event.since <= t <= event.ts)
            raised = False
    if values:
        last = values[-1][1]
        active = [a["alarm"] for a in engine.active()]
        if last < BELOW:
            assert active == ["low"]
        elif last >= CLEAR:
            assert active == []
