"""The last log lines in memory, for the `log.get` command.

A technician far from the building asks "what did the agent say lately?" without shell access; the
journal stays the complete record. The buffer is a bounded deque: old lines fall out, nothing is
written to disk (an SD card does not need a second log).
"""

from __future__ import annotations

import logging
from collections import deque

DEFAULT_CAPACITY = 1000
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RingBufferHandler(logging.Handler):
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(logging.DEBUG)
        self.lines: deque[tuple[int, str]] = deque(maxlen=capacity)
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append((record.levelno, self.format(record)))
        except (TypeError, ValueError):  # a bad %-format in some caller's message
            self.handleError(record)

    def tail(self, count: int, min_level: int = logging.NOTSET) -> list[str]:
        picked = [text for level, text in self.lines if level >= min_level]
        return picked[-count:] if count > 0 else []


def install(capacity: int = DEFAULT_CAPACITY) -> RingBufferHandler:
    """Attach one buffer to the root logger (idempotent: a second call returns the first)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, RingBufferHandler):
            return handler
    handler = RingBufferHandler(capacity)
    root.addHandler(handler)
    return handler
