"""The sparkline ring stays small whatever the poll rate: bounded buckets, bounded points."""

from __future__ import annotations

from agent.local import history as history_mod
from agent.local.history import History
from agent.sdk.models import Reading


def _reading(ts: float, value: object, name: str = "p", device: str = "d") -> Reading:
    return Reading(device=device, name=name, value=value, unit="Pa", ts=ts)  # type: ignore[arg-type]


def test_buckets_are_means_and_the_ring_is_bounded() -> None:
    ring = History(bucket=300.0, buckets=288)
    for second in range(0, 3 * 86400, 10):  # three days of a 10-second poll
        ring.add(_reading(float(second), float(second % 600)))
    series = ring.series("d", "p", now=3 * 86400.0)
    assert len(series) == 288  # 24 h, not 3 days
    assert series[0][0] == 2 * 86400.0  # the oldest kept bucket starts a day back
    assert series[0][1] == 145.0 and series[1][1] == 445.0  # means of 0..290 and 300..590


def test_the_same_reading_twice_counts_once_and_non_numbers_are_skipped() -> None:
    ring = History(bucket=60.0)
    reading = _reading(30.0, 10.0)
    ring.add(reading)
    ring.add(reading)  # sampled again before the next poll
    ring.add(_reading(40.0, float("nan")))
    ring.add(_reading(45.0, "text"))
    ring.add(_reading(50.0, True, name="contact"))
    assert ring.series("d", "p", now=60.0) == [(0.0, 10.0)]
    assert ring.series("d", "contact", now=60.0) == [(0.0, 1.0)]


def test_points_past_the_cap_get_no_sparkline(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(history_mod, "MAX_POINTS", 3)
    ring = History()
    for index in range(5):
        ring.add(_reading(1.0, 1.0, name=f"p{index}"))
    assert len(list(ring.points())) == 3
