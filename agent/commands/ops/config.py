"""The config operations: get, apply (on trial until confirmed), confirm, rollback.

The trial itself (files, deadline, outcome) is agent/lifecycle/config_trial.py; its transitions
go through the context's `trials`, which reports each outcome once.
"""

from __future__ import annotations

import logging

import yaml

from agent.commands import paths
from agent.commands.models import Code, ConfigApplyArgs, NoArgs, Outcome, Problem, Status, ok
from agent.commands.registry import Call, op
from agent.config import loader as config_mod
from agent.config.redact import effective
from agent.lifecycle.config_trial import ConfigTrial, bring_to, reload_after_rollback
from agent.sdk.errors import ConfigError

log = logging.getLogger(__name__)


@op("config.get")
async def config_get(call: Call, args: NoArgs) -> Outcome:
    """The effective config with secrets masked, its digest, and any apply awaiting confirmation."""
    config = call.agent.config
    pending = ConfigTrial(config.source).pending()
    return ok({"digest": config.digest, "config": effective(config),
               "pending": None if pending is None else {"cmd": pending.cmd_id,
                                                        "digest": pending.digest,
                                                        "deadline": pending.deadline}})


@op("config.apply", ConfigApplyArgs, writes=True)
async def config_apply(call: Call, args: ConfigApplyArgs) -> Outcome:
    """Validate, keep the previous file, write atomically, apply (live unless a restart section
    changed); rolled back unless `config.confirm` comes within `confirm_within` seconds. Answers
    `in_progress`; the outcome follows on `cmd/res` and `evt`."""
    agent = call.agent
    trial = ConfigTrial(agent.config.source)
    text = args.config if isinstance(args.config, str) else yaml.safe_dump(args.config,
                                                                          sort_keys=False)
    if trial.pending() is not None:
        raise Problem(Code.CONFLICT, "another config apply waits for its confirmation")
    try:
        new = config_mod.parse(text, str(trial.path))
    except ConfigError as exc:
        raise Problem(Code.UNPROCESSABLE, f"invalid config: {len(exc.problems)} problem(s)",
                      {"problems": exc.problems[:50]}) from None
    if new.gateway.id != agent.config.gateway.id:
        raise Problem(Code.UNPROCESSABLE, "gateway.id cannot change remotely (it is the "
                      "certificate name and the MQTT client id)")
    refused = paths.confine(new, agent.config)
    if refused:
        raise Problem(Code.UNPROCESSABLE, f"{len(refused)} path(s) refused for a remote apply: "
                      + "; ".join(refused[:3]), {"problems": refused[:50]})
    if new.digest == agent.config.digest:
        return ok({"digest": new.digest, "changed": False})
    staged = trial.stage(text, confirm_within=args.confirm_within, now=call.now,
                         cmd_id=call.cmd_id, by=call.by)
    why = f"config {staged.digest} applied by command {call.cmd_id}"
    try:
        applied = await bring_to(agent, new, why)
    except Exception as exc:  # noqa: BLE001 - e.g. a new bus's port cannot be opened
        log.exception("config %s could not be applied live", staged.digest)
        await agent.trials.rollback(trial.kind, f"apply failed: {exc!r}")
        await reload_after_rollback(agent, f"config {staged.digest} failed to apply")
        raise Problem(Code.FAILED, f"apply failed, previous config restored: {exc!r}") from None
    if not applied["restart"]:  # else the restarted agent's watcher takes the trial up
        agent.trials.watch(trial.kind)
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED,
                   {"digest": staged.digest, "prev_digest": staged.prev_digest,
                    "confirm_before": round(staged.deadline, 3), **applied})


@op("config.confirm", writes=True)
async def config_confirm(call: Call, args: NoArgs) -> Outcome:
    """Keep the config in probation."""
    agent = call.agent
    record = ConfigTrial(agent.config.source).pending()
    if record is None:
        raise Problem(Code.CONFLICT, "no config apply waits for a confirmation")
    if record.digest != agent.config.digest:
        raise Problem(Code.CONFLICT, "the applied config is not running yet (restart pending)")
    await agent.trials.commit(ConfigTrial.kind)
    return ok({"digest": record.digest, "confirmed": record.cmd_id})


@op("config.rollback", writes=True)
async def config_rollback(call: Call, args: NoArgs) -> Outcome:
    """Restore the previous config file and run it (live when possible). Answers `succeeded`
    when it runs already, `in_progress` when a restart brings it."""
    agent = call.agent
    if not ConfigTrial(agent.config.source).has_previous():
        raise Problem(Code.CONFLICT, "there is no previous config to go back to")
    await agent.trials.rollback(ConfigTrial.kind, f"config.rollback command {call.cmd_id}")
    done = await reload_after_rollback(agent, f"config rolled back by command {call.cmd_id}")
    if done["restart"]:
        return Outcome(Status.IN_PROGRESS, Code.ACCEPTED, done)
    return ok({"digest": agent.config.digest, **done})
