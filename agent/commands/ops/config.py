"""The config operations: get, apply (on probation until confirmed), confirm, rollback."""

from __future__ import annotations

import logging
from typing import Any

import yaml

from agent.commands import confirm, paths
from agent.commands.models import Code, ConfigApplyArgs, NoArgs, Outcome, Problem, Status, ok
from agent.commands.registry import Call, op
from agent.commands.targets import request_restart
from agent.config import loader as config_mod
from agent.config import reconfigure
from agent.config.redact import effective
from agent.runtime.context import AgentContext
from agent.sdk.errors import ConfigError

log = logging.getLogger(__name__)


@op("config.get")
async def config_get(call: Call, args: NoArgs) -> Outcome:
    """The effective config with secrets masked, its digest, and any apply awaiting confirmation."""
    config = call.agent.config
    pending = confirm.pending(config.source)
    return ok({"digest": config.digest, "config": effective(config),
               "pending": None if pending is None else {"cmd": pending.cmd_id,
                                                        "digest": pending.digest,
                                                        "deadline": pending.deadline}})


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


@op("config.apply", ConfigApplyArgs, writes=True)
async def config_apply(call: Call, args: ConfigApplyArgs) -> Outcome:
    """Validate, keep the previous file, write atomically, apply (live unless a restart section
    changed); rolled back unless `config.confirm` comes within `confirm_within` seconds. Answers
    `in_progress`; the outcome follows on `cmd/res` and `evt`."""
    agent = call.agent
    path = agent.config.source
    text = args.config if isinstance(args.config, str) else yaml.safe_dump(args.config,
                                                                          sort_keys=False)
    if confirm.pending(path) is not None:
        raise Problem(Code.CONFLICT, "another config apply waits for its confirmation")
    try:
        new = config_mod.parse(text, str(path))
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
    staged = confirm.stage(path, text, confirm_within=args.confirm_within, now=call.now,
                           cmd_id=call.cmd_id, by=call.by)
    why = f"config {staged.digest} applied by command {call.cmd_id}"
    try:
        applied = await bring_to(agent, new, why)
    except Exception as exc:  # noqa: BLE001 - e.g. a new bus's port cannot be opened
        log.exception("config %s could not be applied live", staged.digest)
        confirm.rollback(path, reason=f"apply failed: {exc!r}", now=call.now)
        await call.handler.report_outcome()
        await reload_after_rollback(agent, f"config {staged.digest} failed to apply")
        raise Problem(Code.FAILED, f"apply failed, previous config restored: {exc!r}") from None
    if not applied["restart"]:
        call.handler.begin_probation(staged)
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED,
                   {"digest": staged.digest, "prev_digest": staged.prev_digest,
                    "confirm_before": round(staged.deadline, 3), **applied})


@op("config.confirm", writes=True)
async def config_confirm(call: Call, args: NoArgs) -> Outcome:
    """Keep the config in probation."""
    agent = call.agent
    record = confirm.pending(agent.config.source)
    if record is None:
        raise Problem(Code.CONFLICT, "no config apply waits for a confirmation")
    if record.digest != agent.config.digest:
        raise Problem(Code.CONFLICT, "the applied config is not running yet (restart pending)")
    confirm.confirm(agent.config.source, now=call.now)
    call.handler.probation_over()
    await call.handler.report_outcome()
    return ok({"digest": record.digest, "confirmed": record.cmd_id})


@op("config.rollback", writes=True)
async def config_rollback(call: Call, args: NoArgs) -> Outcome:
    """Restore the previous config file and run it (live when possible). Answers `succeeded`
    when it runs already, `in_progress` when a restart brings it."""
    agent = call.agent
    path = agent.config.source
    if not confirm.has_previous(path):
        raise Problem(Code.CONFLICT, "there is no previous config to go back to")
    confirm.rollback(path, reason=f"config.rollback command {call.cmd_id}", now=call.now)
    call.handler.probation_over()
    await call.handler.report_outcome()
    done = await reload_after_rollback(agent, f"config rolled back by command {call.cmd_id}")
    if done["restart"]:
        return Outcome(Status.IN_PROGRESS, Code.ACCEPTED, done)
    return ok({"digest": agent.config.digest, **done})
