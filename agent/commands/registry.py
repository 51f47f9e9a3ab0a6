"""The command registry's vocabulary: an operation (`Op`), the `op` decorator that makes one, and
the `Call` an operation receives.

An operation returns an `Outcome` or raises `Problem(code, reason)`; anything else it raises is a
bug that the handler's isolation boundary turns into `failed 500`. `writes=True` marks what
changes the gateway or the building. HARMLESS lists what neither changes anything nor reveals the
configuration, the logs or the audit: only those run unsigned on a gateway without a command key
(`commands.unsigned: readonly`, the default), or with `commands.require_signature: writes`.

Decorating registers nothing: `agent/commands/catalog.py` lists the operation modules and builds
the one table from them, so importing an operation module has no side effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from agent.commands.models import NoArgs, Outcome

if TYPE_CHECKING:
    from agent.commands.audit import AuditTrail
    from agent.runtime.context import AgentContext
    from agent.sdk.clock import Clock

# Liveness, inventory and fresh readings: what an anonymous sender may ask (DESIGN §3.3). A poll
# now is an earlier poll of what is polled anyway (the poller coalesces repeated requests).
HARMLESS = frozenset({"ping", "rebirth", "health", "point.read", "poll.now", "buffer.stats"})


class Handler(Protocol):
    """What an operation may use of the command handler that runs it."""

    agent: AgentContext
    audit: AuditTrail
    clock: Clock

    def settle(self, outcome: dict[str, Any], *, op: str, succeeded: bool,
               result: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Call:
    handler: Handler
    cmd_id: str
    by: str | None
    signed: bool
    now: float

    @property
    def agent(self) -> AgentContext:
        return self.handler.agent


OpFunc = Callable[[Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Op:
    name: str
    args: type[BaseModel]
    run: OpFunc
    writes: bool


def op(name: str, args: type[BaseModel] = NoArgs, *, writes: bool = False
       ) -> Callable[[OpFunc], Op]:
    """Make `func` the operation `name`; `catalog.py` puts it in the table."""
    def make(func: OpFunc) -> Op:
        return Op(name, args, func, writes)
    return make
