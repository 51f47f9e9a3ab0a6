"""`batigate run` with a bug injected: the health task raises an unexpected exception after
BATIGATE_CRASH_AFTER seconds, as a real bug in any core task would. Run as
`python -m tests.security.crashing_agent run --config FILE` (a real process, real broker)."""

from __future__ import annotations

import asyncio
import os

from agent.runtime import supervisor
from agent.cli.main import main


class InjectedBug(RuntimeError):
    pass


async def crash_after_a_while(self: supervisor.Agent) -> None:
    await asyncio.sleep(float(os.environ.get("BATIGATE_CRASH_AFTER", "1.5")))
    raise InjectedBug("injected by the test")


supervisor.Agent.publish_health = crash_after_a_while  # type: ignore[method-assign]
main()
