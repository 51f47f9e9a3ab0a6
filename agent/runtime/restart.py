"""A restart of the agent on request: the supervisor stops cleanly and systemd starts it again.

Commands (`agent.restart`, a config apply that changes a restart section) and the trials (a
rollback that needs a fresh start) ask for one; it lives here, beside the supervisor that honours
it, so that neither side has to import the other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # lets the answer reach the broker before the agent stops


def request_restart(agent: AgentContext, reason: str) -> None:
    """Ask the supervisor to stop so systemd starts the agent again (after RESTART_DELAY)."""
    event = getattr(agent, "restart_requested", None)
    if not isinstance(event, asyncio.Event):
        event = asyncio.Event()
        agent.restart_requested = event
    log.warning("restart requested: %s", reason)
    asyncio.get_running_loop().call_later(RESTART_DELAY, event.set)
