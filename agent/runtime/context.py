"""`AgentContext`: what commands, the control socket and health may use of a running agent.

`agent.runtime.supervisor.Agent` is the one implementation. Code on this side of the seam takes an
`AgentContext`, not the whole `Agent`, so what it may read or change is written down in one place
(`tests/agent/test_context.py` fails when such code reaches for a member not declared here), and
a test can hand it a smaller stand-in. Imports are for type checking only: this module must not
pull the runtime in (commands import it, and the supervisor imports the commands).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.sdk.clock import Clock
    from agent.config.loader import Config
    from agent.runtime.control_stats import ControlStats
    from agent.store.outbox import Outbox
    from agent.runtime.pipeline import Pipeline
    from agent.runtime.poller import DevicePoller
    from agent.config.reconfigure import Plan
    from agent.lifecycle.trial import Trial
    from agent.uplink.session import Uplink
    from agent.runtime.watcher import DeviceWatcher
    from agent.local.history import History
    from agent.local.http import Server
    from agent.sdk.driver import Driver


class CommandAuth(Protocol):
    """What the context shows of the command handler (the handler imports the operations, which
    take an AgentContext: naming the handler here would close a loop)."""

    auth: str  # signed | signed-writes | unsigned-readonly | unsigned-allow


class Trials(Protocol):
    """The trials of changes on probation (agent/lifecycle/trial_watch.py): what commands begin,
    prove or undo. `kind` is `config`, `cert`, or `update.<kind>` (agent/lifecycle/update_trial.py)."""

    def trial(self, kind: str) -> Trial[Any, Any]: ...  # the machine, for its record
    def watch(self, kind: str) -> None: ...  # begun in this running agent: watch its deadline
    async def commit(self, kind: str) -> Any: ...  # proven by a command: stays, reported
    async def rollback(self, kind: str, reason: str) -> Any: ...  # undone, reported


@runtime_checkable
class AgentContext(Protocol):
    config: Config  # the running configuration (replaced by a live config apply)
    clock: Clock
    session: int  # this process's outbox session
    started: float  # monotonic time of the start (uptime)
    outbox: Outbox
    pipeline: Pipeline  # events on `evt`, latest readings, device states
    pollers: dict[str, DevicePoller | DeviceWatcher]  # per device: read, write, poll now
    drivers: dict[str, Driver]  # per bus: its counters, for health and the page
    engine: Any  # rules.engine.RuleEngine, or None without rules (rules/ is optional)
    uplink: Uplink  # rebirth, direct publishes, connection figures
    commands: CommandAuth  # its auth mode, for `status`
    trials: Trials  # config applies, updates, certificates on probation
    group: asyncio.TaskGroup | None  # the supervisor's, for work that outlives a command
    restart_requested: asyncio.Event  # set: the supervisor stops cleanly and is restarted
    control_stats: ControlStats  # the control socket's bounds, counted for health
    # The local page and API (agent/local/server.py sets them once it serves; None: off)
    local_server: Server | None
    local_history: History | None

    def health(self) -> dict[str, Any]: ...

    async def apply_config(self, new: Config, changes: Plan) -> None: ...
