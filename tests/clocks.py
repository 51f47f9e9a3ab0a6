"""The fake clock the tests share: a callable that reads `now`, moved by the test.

Drivers and simulators take a `Callable[[], float]` clock (wall or monotonic, by their contract);
a test builds one `FakeClock(start)` and sets or advances `now` where the scenario says so."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
