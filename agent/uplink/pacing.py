"""A token bucket for the backlog: what an outage held back drains at a bounded rate, so a week
of buffered telemetry never crowds out live readings and alarms on a thin uplink.

While the bucket has tokens, telemetry leaves in plain `seq` order; once a large backlog has used
them, live telemetry (and alarms and events, which are never paced) overtakes the rest of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    def __init__(self, rate: float, burst: float, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate  # messages per second; 0 means unpaced
        self.burst = max(1.0, burst)
        self._monotonic = monotonic
        self._tokens = self.burst
        self._at = monotonic()

    def available(self) -> int | None:
        """Whole messages the backlog may send now; None when pacing is off."""
        if self.rate <= 0:
            return None
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self._tokens)

    def spend(self, count: int) -> None:
        if self.rate > 0:
            self._tokens -= count

    def wait(self) -> float:
        """Seconds until one more backlog message may go."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, (1.0 - self._tokens) / self.rate)
