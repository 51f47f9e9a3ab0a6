"""The running agent's side of every trial (`trial.py`): one watcher, the supervisor's `trials` task.

    start ─► each trial kind (config, each update kind, cert):
               outcome left by an earlier run? settled (evt + final answer), cmd/res once connected
               a trial on, but not what runs (stale)? rolled back at once
               a trial on? wait for its proof before the deadline:
                   config: the `config.confirm` command   update, cert: a broker session
                 proven: committed, reported   deadline: rolled back, reported, run what came back

A trial begun while the agent runs (a config applied live) is watched from `watch`; commands end a
trial through `commit` and `rollback`. Every end goes through `Trial.settle_outcome`, so each
outcome is reported once: at once when the broker is there, else by whichever agent runs next
(a rollback that restarts leaves its outcome on disk for the next start).

`TrialWatch` is the context's `Trials` (agent/runtime/context.py): what commands use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.lifecycle import cert_trial, update_rootfs, update_trial
from agent.lifecycle.config_trial import ConfigTrial
from agent.lifecycle.trial import Settle, Trial
from agent.runtime.restart import request_restart

if TYPE_CHECKING:
    from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)


def trials_of(config: Any) -> dict[str, Trial[Any, Any]]:
    """Every trial kind this config has, by name (no `cert` without a client certificate)."""
    found: list[Trial[Any, Any]] = [ConfigTrial(config.source), *update_trial.trials(config.update)]
    if (cert := cert_trial.of(config)) is not None:
        found.append(cert)
    return {trial.kind: trial for trial in found}


class TrialWatch:
    """The `Trials` of the running agent: every trial kind of its config, one watcher."""

    def __init__(self, agent: AgentContext, *, settle: Settle,
                 kinds: Callable[[Any], dict[str, Trial[Any, Any]]] = trials_of) -> None:
        self.agent = agent
        self._settle = settle  # CommandHandler.settle: evt + the command's final cached answer
        self._kinds = kinds  # the trials of a config (a test hands its own policy)
        self._ended: dict[str, asyncio.Event] = {}  # per kind: a command ended the trial

    def trial(self, kind: str) -> Trial[Any, Any]:
        """The machine of `kind` for the running config (KeyError when it has none)."""
        return self._kinds(self.agent.config)[kind]

    def watch(self, kind: str) -> None:
        """A trial of `kind` was just begun in this running agent: wait for its proof or its
        deadline. (None of the supervisor's group: an agent built but not served, in tests.)"""
        ended = self._ended[kind] = asyncio.Event()
        trial = self.trial(kind)
        record = trial.pending()
        if record is not None and self.agent.group is not None:
            self.agent.group.create_task(self._watch(trial, record, ended), name=f"trial-{kind}")

    async def commit(self, kind: str) -> Any:
        """A command proved the trial (`config.confirm`): it stays, and that is reported."""
        trial = self.trial(kind)
        record = trial.commit(now=self.agent.clock.time())
        self._end(kind)
        await self.report(trial)
        return record

    async def rollback(self, kind: str, reason: str) -> Any:
        """A command (or a failed apply) ends the trial: what was before comes back, reported.
        Running it (reload, restart) is the caller's."""
        trial = self.trial(kind)
        record = trial.rollback(reason=reason, now=self.agent.clock.time())
        self._end(kind)
        await self.report(trial)
        return record

    async def report(self, trial: Trial[Any, Any]) -> None:
        """Settle the outcome now (the `evt` is durable in the outbox); `cmd/res` now when the
        broker is there, else once it is (unless the agent stops first: the cached final answer
        still answers the backend's retry)."""
        final = trial.settle_outcome(self._settle)
        if final is None:
            return
        if self.agent.uplink.connected.is_set():
            await self.agent.uplink.publish_direct("cmd/res", final, qos=1)
        elif self.agent.group is not None:
            self.agent.group.create_task(self._publish_when_connected(final), name="trial-report")

    def _end(self, kind: str) -> None:
        if (ended := self._ended.get(kind)) is not None:
            ended.set()

    # -- the supervisor task ------------------------------------------------------------------

    async def run(self) -> None:
        """Report how earlier trials ended and take up the ones still on; ends when they do."""
        async with asyncio.TaskGroup() as tg:
            kinds = self._kinds(self.agent.config)
            for trial in kinds.values():
                tg.create_task(self._take_up(trial, tg), name=f"trial-{trial.kind}")
            if (agent_update := kinds.get(update_trial.AgentRelease.kind)) is not None:
                # A whole-system update has its own steps (RAUC, a reboot between) and shares
                # the agent update's outcome note, so its report is that trial's.
                tg.create_task(update_rootfs.watch(self.agent, lambda: self.report(agent_update)),
                               name="trial-rootfs")

    async def _take_up(self, trial: Trial[Any, Any], tg: asyncio.TaskGroup) -> None:
        if (final := trial.settle_outcome(self._settle)) is not None:
            tg.create_task(self._publish_when_connected(final))
        record = trial.pending()
        if record is None:
            return
        ended = self._ended[trial.kind] = asyncio.Event()
        if (why := trial.stale(self.agent, record)) is not None:
            log.warning("%s on trial is not what runs: rolled back", trial.describe(record))
            trial.rollback(reason=why, now=self.agent.clock.time())
            if trial.stale_restarts:  # the next start reports it
                request_restart(self.agent, f"stale {trial.describe(record)} rolled back")
            elif (final := trial.settle_outcome(self._settle)) is not None:
                tg.create_task(self._publish_when_connected(final))
            return
        await self._watch(trial, record, ended)

    async def _watch(self, trial: Trial[Any, Any], record: Any, ended: asyncio.Event) -> None:
        delay = max(0.0, record.deadline - self.agent.clock.time())
        log.warning("%s on trial: %s within %.0fs or it is rolled back", trial.describe(record),
                    "it must reach the broker" if trial.commit_on_connect else "confirm it", delay)
        try:
            async with asyncio.timeout(delay):
                await self._proof(trial, ended)
        except TimeoutError:
            current = trial.pending()
            if current is None or current.cmd_id != record.cmd_id:
                return  # ended meanwhile, by a command
            trial.rollback(reason=trial.words.deadline_reason, now=self.agent.clock.time())
            if self.agent.uplink.connected.is_set():
                await self.report(trial)
            why = f"{trial.describe(record)} rolled back: {trial.words.deadline_reason}"
            if not await trial.resume(self.agent, why):
                await self.report(trial)  # what came back runs here: no next start reports it
            return
        if ended.is_set():
            return  # a command ended it, and reported it
        trial.commit(now=self.agent.clock.time())
        await self.report(trial)

    async def _proof(self, trial: Trial[Any, Any], ended: asyncio.Event) -> None:
        """Until a command ends the trial or, for a trial proven by a session, the broker took
        this agent's birth (`uplink.connected`)."""
        waits = [asyncio.ensure_future(ended.wait())]
        if trial.commit_on_connect:
            waits.append(asyncio.ensure_future(self.agent.uplink.connected.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _publish_when_connected(self, final: dict[str, Any]) -> None:
        await self.agent.uplink.connected.wait()
        await self.agent.uplink.publish_direct("cmd/res", final, qos=1)
