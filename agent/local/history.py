"""A small bounded ring of recent values per point, for the status page's 24-hour sparklines.

Each point keeps at most `buckets` averages (288 five-minute buckets: 24 h by default); memory is
bounded by points × buckets, whatever the poll rate. Only numeric points are kept (a bool is kept
as 0/1, so a contact's day shows as a step line). The ring is filled by sampling the pipeline's
latest readings (`sample`), so the data path to the broker is not touched; it lives in memory and
starts empty after a restart (the backend holds the real history).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.sdk.models import Reading

MAX_POINTS = 5000  # a bigger site still works; points past this have no sparkline


@dataclass
class _Series:
    buckets: deque[tuple[float, float, int]]  # (bucket start, sum, count)
    last_ts: float = 0.0


@dataclass
class History:
    bucket: float = 300.0
    buckets: int = 288
    _series: dict[tuple[str, str], _Series] = field(default_factory=dict)

    def add(self, reading: Reading) -> None:
        value = reading.value
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, int | float) or value != value:  # NaN is not a value
            return
        key = (reading.device, reading.name)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_POINTS:
                return
            series = self._series[key] = _Series(deque(maxlen=self.buckets))
        if reading.ts <= series.last_ts:
            return  # the same reading sampled twice, or a clock set back
        series.last_ts = reading.ts
        start = reading.ts - reading.ts % self.bucket
        ring = series.buckets
        if ring and ring[-1][0] == start:
            _, total, count = ring[-1]
            ring[-1] = (start, total + float(value), count + 1)
        else:
            ring.append((start, float(value), 1))

    def sample(self, latest: dict[str, dict[str, Reading]]) -> None:
        for readings in latest.values():
            for reading in readings.values():
                self.add(reading)

    def series(self, device: str, point: str, now: float) -> list[tuple[float, float]]:
        """(bucket start, mean) of the window that ends now, oldest first."""
        found = self._series.get((device, point))
        if found is None:
            return []
        since = now - self.bucket * self.buckets
        return [(start, total / count) for start, total, count in found.buckets if start >= since]

    def points(self) -> Iterable[tuple[str, str]]:
        return self._series.keys()
