"""The control socket's bounds, counted: kept apart from the socket so that `AgentContext` can name
them without importing the server (which reaches the command operations)."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass


@dataclass
class ControlStats:
    """What the control socket refused, for `health.control`."""

    clients: int = 0  # connected now
    refused: int = 0  # over the connection cap
    idle_closed: int = 0  # silent past the idle timeout
    oversized: int = 0  # a line over MAX_LINE
    no_descriptor: int = 0  # accept failed: the descriptor table is full (EMFILE)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def client_cap(configured: int) -> int:
    """The configured cap, never more than a quarter of the descriptors this process may open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(configured, soft // 4)) if soft != resource.RLIM_INFINITY else configured
