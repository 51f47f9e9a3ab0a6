"""One input line's debounced state and the counts derived from it, fed with edge events.

Debounce on timestamps: a level counts once it has held for `debounce` seconds, either because
the next edge came that much later or because that much time has passed at the poll. The change
is dated when the line really moved (the edge), not when it was confirmed, so "open for" is
right even with a slow poll. A pulse shorter than `debounce` (a bounce) never counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

HOUR = 3600.0


@dataclass
class InputState:
    debounce: float
    stable: bool  # the debounced (logical) level
    since: float  # when `stable` began (monotonic seconds)
    since_known: bool  # False while the level is the one found at start: it began earlier
    raw: bool = field(init=False)  # the last edge's level, maybe not confirmed yet
    raw_since: float = field(init=False)
    activations: int = 0  # inactive -> active transitions since start
    recent: deque[float] = field(default_factory=deque)  # their times within the last hour
    last_seqno: int = 0

    def __post_init__(self) -> None:
        self.raw, self.raw_since = self.stable, self.since

    @classmethod
    def at_start(cls, level: bool, now: float, debounce: float) -> InputState:
        return cls(debounce=debounce, stable=level, since=now, since_known=False)

    def edge(self, active: bool, t: float) -> None:
        """Feed one edge, in time order."""
        if active == self.raw:
            return  # a repeated level (events lost in between): nothing moved since
        self._confirm_until(t)
        self.raw, self.raw_since = active, t

    def settle(self, now: float) -> None:
        """At a poll: confirm the last edge if it has held long enough; forget old activations."""
        self._confirm_until(now)
        while self.recent and self.recent[0] <= now - HOUR:
            self.recent.popleft()

    def resync(self, level: bool, now: float) -> None:
        """Events were lost: trust the level read now, of unknown age."""
        self.raw, self.raw_since = level, now
        if level != self.stable:
            self._change(level, now, known=False)

    def _confirm_until(self, t: float) -> None:
        if self.raw != self.stable and t - self.raw_since >= self.debounce:
            self._change(self.raw, self.raw_since, known=True)

    def _change(self, level: bool, t: float, *, known: bool) -> None:
        self.stable, self.since, self.since_known = level, t, known
        if level and known:
            self.activations += 1
            self.recent.append(t)

    def active_for(self, now: float) -> float:
        return round(max(0.0, now - self.since), 3) if self.stable else 0.0

    def activations_last_hour(self, now: float) -> int:
        return sum(1 for t in self.recent if t > now - HOUR)
