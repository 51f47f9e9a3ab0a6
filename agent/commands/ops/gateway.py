"""The gateway's own operations: liveness, birth, health, restart, logs and the audit trail."""

from __future__ import annotations

import logging

from agent.commands.models import (AuditArgs, Code, LogGetArgs, LogLevelArgs, NoArgs, Outcome,
                                   Status, ok)
from agent.commands.registry import Call, op
from agent.runtime.restart import RESTART_DELAY, request_restart
from agent.runtime import health, logbuffer


@op("ping")
async def ping(call: Call, args: NoArgs) -> Outcome:
    """Liveness: answers at once with the session number."""
    return ok({"pong": True, "sess": call.agent.session})


@op("rebirth")
async def rebirth(call: Call, args: NoArgs) -> Outcome:
    """Publish the birth message again and poll every device now."""
    agent = call.agent
    await agent.uplink.rebirth()
    for poller in agent.pollers.values():  # fresh values after the birth, as Sparkplug does
        poller.poll_now()
    return ok({"birth": True, "polled": len(agent.pollers)})


@op("health")
async def health_now(call: Call, args: NoArgs) -> Outcome:
    """The health document now (the same as the periodic `health` message)."""
    return ok(health.report(call.agent))


@op("agent.restart", writes=True)
async def agent_restart(call: Call, args: NoArgs) -> Outcome:
    """Stop the agent cleanly; systemd starts it again. Answers `accepted`."""
    request_restart(call.agent, f"command {call.cmd_id} by {call.by or '?'}")
    return Outcome(Status.ACCEPTED, Code.ACCEPTED, {"restart_in": RESTART_DELAY})


@op("log.level", LogLevelArgs, writes=True)
async def log_level(call: Call, args: LogLevelArgs) -> Outcome:
    """Change a logger's level until the next restart."""
    logger = logging.getLogger(args.logger or None)
    previous = logging.getLevelName(logger.getEffectiveLevel()).lower()
    logger.setLevel(args.level.upper())
    return ok({"logger": args.logger or "root", "previous": previous, "level": args.level,
               "persistent": False})


@op("log.get", LogGetArgs)
async def log_get(call: Call, args: LogGetArgs) -> Outcome:
    """The last log lines kept in memory."""
    buffer = logbuffer.install()
    level = logging.getLevelName(args.level.upper()) if args.level else logging.NOTSET
    lines = buffer.tail(args.lines, level)
    return ok({"lines": lines})


@op("audit.get", AuditArgs)
async def audit_get(call: Call, args: AuditArgs) -> Outcome:
    """The most recent entries of the command audit trail (`noise: false`: only the kept ones:
    signed, executed and local commands), and how many anonymous ones came since the start."""
    audit = call.handler.audit
    return ok({"entries": audit.recent(args.lines, noise=args.noise), "noise": audit.noise})
