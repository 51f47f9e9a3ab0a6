"""Remote config updates with a confirmed commit (NETCONF-style; research/standards.md §6.10): the
config policy of the trial machine (`trial.py`).

Files beside the config (`gateway.yaml`):

    gateway.yaml          the config in force (or about to be, after the restart)
    gateway.yaml.prev     the one before the last apply: what a rollback restores
    gateway.yaml.pending  the trial record: an apply waiting for `config.confirm`
    gateway.yaml.outcome  how the last apply ended, until it has been reported
    gateway.yaml.rejected the config a rollback put aside, for the post-mortem

Committed by the `config.confirm` command only (a broker session proves nothing about the
buildings' devices); `check_at_start` runs before the config is loaded, which is what rolls back
a config that makes the agent crash before it could ever run its own probation timer.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import loader as config_mod
from agent.config import reconfigure
from agent.i18n import t
from agent.lifecycle.trial import Trial, Words
from agent.runtime.restart import request_restart
from agent.sdk.durable import write_atomic

if TYPE_CHECKING:
    from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    cmd_id: str
    digest: str  # of the staged config
    prev_digest: str
    deadline: float  # epoch seconds
    by: str | None


def digest(text: str) -> str:
    """The same digest as `Config.digest`."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _digest_of(path: Path) -> str:
    return digest(path.read_bytes().decode("utf-8", errors="replace"))


class ConfigTrial(Trial[Pending, "AgentContext"]):
    kind = "config"
    record_type = Pending
    words = Words("config.apply", "config.confirmed", "config.rolled_back",
                  start_reason="not confirmed in time (found at start)",
                  deadline_reason="not confirmed in time")
    stale_restarts = True
    restores_without_trial = True  # `config.rollback` goes back to `.prev` with nothing pending

    def __init__(self, path: Path) -> None:
        super().__init__(_side(path, ".pending"), _side(path, ".outcome"))
        self.path = path

    def stage(self, text: str, *, confirm_within: float, now: float, cmd_id: str,
              by: str | None) -> Pending:
        """Keep the current file as `.prev`, write `text` in its place, and the trial record.

        Order matters for power cuts: the record and `.prev` go first, then the config itself;
        a start that finds the record but the old file (digest mismatch) drops it.
        """
        current = self.path.read_bytes()
        record = Pending(cmd_id=cmd_id, digest=digest(text),
                         prev_digest=digest(current.decode("utf-8", errors="replace")),
                         deadline=now + confirm_within, by=by)
        self.begin(record)
        write_atomic(_side(self.path, ".prev"), current)
        write_atomic(self.path, text.encode())
        return record

    def has_previous(self) -> bool:
        return _side(self.path, ".prev").exists()

    def restore(self, record: Pending | None) -> None:
        """`.prev` back in place (the current file kept as `.rejected`); FileNotFoundError
        without `.prev`."""
        if record is not None and self.path.exists() and \
                _digest_of(self.path) == record.prev_digest:
            return  # power went before the staged file took over: the old one is in force
        previous = _side(self.path, ".prev").read_bytes()
        if self.path.exists():
            write_atomic(_side(self.path, ".rejected"), self.path.read_bytes())
        write_atomic(self.path, previous)
        log.warning("config rolled back to %s", digest(previous.decode("utf-8", "replace")))

    def fields(self, record: Pending) -> dict[str, Any]:
        return {"digest": record.digest, "prev_digest": record.prev_digest}

    def result(self, outcome: dict[str, Any], committed: bool) -> dict[str, Any]:
        result = {"digest": outcome["digest"]}
        if not committed:
            result["prev_digest"] = outcome["prev_digest"]
        return result

    def start_line(self, record: Pending) -> str:
        return t("run.config_rolled_back", cmd=record.cmd_id)

    def describe(self, record: Pending) -> str:
        return f"config {record.digest}"

    def stale(self, agent: AgentContext, record: Pending) -> str | None:
        if record.digest != agent.config.digest:
            return "the running config is not the staged one"
        return None

    async def resume(self, agent: AgentContext, why: str) -> bool:
        return bool((await reload_after_rollback(agent, why))["restart"])


async def bring_to(agent: AgentContext, new: Any, why: str) -> dict[str, Any]:
    """Run `new`: live when only live sections changed (`Agent.apply_config`), else by a restart.
    Raises what the live apply raised (a bus that cannot open): the caller decides what then."""
    changes = reconfigure.plan(agent.config, new)
    if changes.restart:
        request_restart(agent, f"{why}; {', '.join(changes.restart)} changed")
    else:
        await agent.apply_config(new, changes)
    return {"restart": bool(changes.restart), "changes": changes.as_dict()}


async def reload_after_rollback(agent: AgentContext, why: str) -> dict[str, Any]:
    """The previous file is back in place: run it again, live when possible, else restart."""
    try:
        return await bring_to(agent, config_mod.load(agent.config.source), why)
    except Exception:  # noqa: BLE001 - whatever failed, a restart on the restored file is safe
        log.exception("live rollback failed: restarting on the restored file")
        request_restart(agent, why)
        return {"restart": True}
