"""Alarm acknowledgement and device maintenance: what the rule engine is told by a person."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.commands.models import AlarmAckArgs, Code, MaintenanceArgs, Outcome, Problem, ok
from agent.commands.registry import Call, op
from agent.commands.targets import device_named
from agent.runtime.context import AgentContext


def _engine_call(agent: AgentContext, method: str) -> Callable[..., Any]:
    engine = agent.engine
    if engine is None:
        raise Problem(Code.NOT_FOUND, "no rules are configured on this gateway")
    func = getattr(engine, method, None)
    if func is None:
        raise Problem(Code.NOT_IMPLEMENTED, f"the rule engine does not support {method} yet")
    return func


@op("alarm.ack", AlarmAckArgs, writes=True)
async def alarm_ack(call: Call, args: AlarmAckArgs) -> Outcome:
    """Acknowledge an alarm (id = rule id); `note` goes to the audit trail only."""
    agent = call.agent
    ack = _engine_call(agent, "ack")
    try:
        events = ack(args.alarm, by=call.by or "unknown", now=call.now)
    except KeyError:
        raise Problem(Code.NOT_FOUND, f"no alarm {args.alarm!r}") from None
    agent.pipeline.alarm_events(list(events or []))
    return ok({"alarm": args.alarm, "acked": True})


@op("maintenance.set", MaintenanceArgs, writes=True)
async def maintenance_set(call: Call, args: MaintenanceArgs) -> Outcome:
    """Put a device in maintenance until `until` (epoch seconds; null ends it): its alarms are
    suppressed by the rule engine and an `evt` tells the backend."""
    agent = call.agent
    device = device_named(agent, args.dev)
    if args.until is not None and args.until <= call.now:
        raise Problem(Code.UNPROCESSABLE, "until is in the past; send null to end a maintenance")
    applied = 0
    if agent.engine is not None:
        set_maintenance = _engine_call(agent, "set_maintenance")
        events = set_maintenance(device.id, args.until, now=call.now)
        agent.pipeline.alarm_events(list(events or []))
        applied = 1
    agent.pipeline.event({"type": "maintenance.set", "dev": device.id, "until": args.until,
                          "cmd": call.cmd_id, "by": call.by})
    return ok({"dev": device.id, "until": args.until, "rules": bool(applied)})
