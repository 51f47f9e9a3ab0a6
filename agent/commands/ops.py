"""The operations: one small coroutine each, registered with its argument model.

An operation returns an `Outcome` or raises `Problem(code, reason)`; anything else it raises is a
bug that the handler's isolation boundary turns into `failed 500`. `writes=True` marks what
changes the gateway or the building. HARMLESS lists what neither changes anything nor reveals the
configuration, the logs or the audit: only those run unsigned on a gateway without a command key
(`commands.unsigned: readonly`, the default), or with `commands.require_signature: writes`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel

from agent.config import loader as config_mod
from agent.runtime import health
from agent.runtime import logbuffer
from agent.config import reconfigure
from agent.commands import confirm, paths
from agent.commands.models import (AlarmAckArgs, AuditArgs, Code, ConfigApplyArgs, DeviceArgs,
                                   LogGetArgs, LogLevelArgs, MaintenanceArgs, NoArgs, Outcome,
                                   PointArgs, Problem, ResendArgs, Status, WriteArgs, ok)
from agent.config.models import DeviceConfig, PointConfig
from agent.runtime.context import AgentContext
from agent.sdk.errors import ConfigError, DeviceUnavailable, DriverError, PointNotWritable
from agent.sdk.models import Reading
from agent.runtime.normalize import Normalizer
from agent.store.outbox import ResendUnavailable
from agent.config.redact import effective

if TYPE_CHECKING:
    from agent.commands.handler import CommandHandler

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # lets the answer reach the broker before the agent stops


@dataclass(frozen=True, slots=True)
class Call:
    handler: CommandHandler
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


OPERATIONS: dict[str, Op] = {}
# Liveness, inventory and fresh readings: what an anonymous sender may ask (DESIGN §3.3). A poll
# now is an earlier poll of what is polled anyway (the poller coalesces repeated requests).
HARMLESS = frozenset({"ping", "rebirth", "health", "point.read", "poll.now", "buffer.stats"})


def op(name: str, args: type[BaseModel] = NoArgs, *, writes: bool = False
       ) -> Callable[[OpFunc], OpFunc]:
    def register(func: OpFunc) -> OpFunc:
        OPERATIONS[name] = Op(name, args, func, writes)
        return func

    return register


# -- helpers ----------------------------------------------------------------------------------

def device_named(agent: AgentContext, dev: str) -> DeviceConfig:
    for device in agent.config.devices:
        if device.id == dev:
            return device
    raise Problem(Code.NOT_FOUND, f"unknown device {dev!r}")


def _point(device: DeviceConfig, name: str) -> PointConfig:
    for point in device.points:
        if point.name == name:
            return point
    raise Problem(Code.NOT_FOUND, f"device {device.id} has no point {name!r}")


def _poller(agent: AgentContext, dev: str) -> Any:
    poller = agent.pollers.get(dev)
    if poller is None:
        raise Problem(Code.UNAVAILABLE, f"the drivers are not running; {dev} cannot be reached")
    return poller


async def fresh_readings(agent: AgentContext, device: DeviceConfig) -> list[Reading]:
    """Every point of `device` read now (under the bus lock), normalized; device and driver
    failures become the command's answer."""
    try:
        values = await _poller(agent, device.id).read_now()
    except (DeviceUnavailable, TimeoutError) as exc:
        raise Problem(Code.UNAVAILABLE, f"{device.id} did not answer: {exc or 'timeout'}") from None
    except DriverError as exc:
        raise Problem(Code.FAILED, str(exc)) from None
    synced = bool(agent.pipeline.clock_synced())
    return Normalizer(device).readings(values, agent.clock.time(), synced=synced)


def request_restart(agent: AgentContext, reason: str) -> None:
    """Ask the supervisor to stop so systemd starts the agent again (after RESTART_DELAY)."""
    event = getattr(agent, "restart_requested", None)
    if not isinstance(event, asyncio.Event):
        event = asyncio.Event()
        agent.restart_requested = event
    log.warning("restart requested: %s", reason)
    asyncio.get_running_loop().call_later(RESTART_DELAY, event.set)


# -- gateway ----------------------------------------------------------------------------------

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


# -- points and polls ---------------------------------------------------------------------------

@op("point.read", PointArgs)
async def point_read(call: Call, args: PointArgs) -> Outcome:
    """A fresh read from the device: value `v`, SenML unit `u`, quality `q`, time `ts`."""
    agent = call.agent
    device = device_named(agent, args.dev)
    point = _point(device, args.n)
    reading = next((r for r in await fresh_readings(agent, device) if r.name == point.name), None)
    if reading is None:
        raise Problem(Code.FAILED, f"the driver returned no value for {point.name}")
    return ok({"dev": device.id, "n": point.name, "v": reading.value, "u": reading.unit,
               "q": reading.quality.value, "ts": round(reading.ts, 3),
               **({"reason": reading.reason} if reading.reason else {})})


def _check_value(device: DeviceConfig, point: PointConfig, value: bool | float) -> None:
    where = f"{device.id}/{point.name}"
    if not point.writable:
        raise Problem(Code.FORBIDDEN, f"{where} is not declared writable")
    is_bool_point = getattr(point, "type", None) == "bool"
    if is_bool_point and not isinstance(value, bool):
        raise Problem(Code.UNPROCESSABLE, f"{where} is a bool point: v must be true or false")
    if not is_bool_point and isinstance(value, bool):
        raise Problem(Code.UNPROCESSABLE, f"{where} is numeric: v must be a number")
    if not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise Problem(Code.UNPROCESSABLE, f"{where}: v must be a finite number")
        if point.min is not None and value < point.min:
            raise Problem(Code.UNPROCESSABLE, f"{where}: {value} is below the minimum {point.min}")
        if point.max is not None and value > point.max:
            raise Problem(Code.UNPROCESSABLE, f"{where}: {value} is above the maximum {point.max}")


@op("point.write", WriteArgs, writes=True)
async def point_write(call: Call, args: WriteArgs) -> Outcome:
    """Write `v` (in the unit the config declares) to a point declared writable, within its
    min/max."""
    agent = call.agent
    device = device_named(agent, args.dev)
    point = _point(device, args.n)
    _check_value(device, point, args.v)
    poller = _poller(agent, device.id)
    try:
        await poller.write_now(point, args.v)
    except PointNotWritable as exc:
        raise Problem(Code.FORBIDDEN, str(exc)) from None
    except (DeviceUnavailable, TimeoutError) as exc:
        raise Problem(Code.UNAVAILABLE, f"{device.id} did not answer: {exc or 'timeout'}") from None
    except DriverError as exc:
        raise Problem(Code.FAILED, str(exc)) from None
    # The backend sees the write in the event stream and its effect in the next telemetry.
    agent.pipeline.event({"type": "point.written", "dev": device.id, "n": point.name,
                          "value": args.v, "cmd": call.cmd_id, "by": call.by})
    poller.poll_now()
    return ok({"dev": device.id, "n": point.name, "v": args.v})


@op("poll.now", DeviceArgs)
async def poll_now(call: Call, args: DeviceArgs) -> Outcome:
    """Poll the device now instead of at its next tick. Answers `accepted`."""
    device = device_named(call.agent, args.dev)
    _poller(call.agent, device.id).poll_now()
    return Outcome(Status.ACCEPTED, Code.ACCEPTED, {"dev": device.id})


# -- config -----------------------------------------------------------------------------------

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


# -- alarms and maintenance ---------------------------------------------------------------------

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


# -- buffer and logs ----------------------------------------------------------------------------

@op("buffer.stats")
async def buffer_stats(call: Call, args: NoArgs) -> Outcome:
    """Outbox depth, oldest age and sequence range."""
    return ok(call.agent.outbox.stats())


@op("buffer.resend", ResendArgs, writes=True)
async def buffer_resend(call: Call, args: ResendArgs) -> Outcome:
    """Publish again, with their seq and mid, the delivered messages still retained
    (`buffer.retain`); 501 when the gateway retains nothing."""
    if args.to_seq < args.from_seq:
        raise Problem(Code.BAD_REQUEST, "to_seq is lower than from_seq")
    try:
        result = call.agent.outbox.resend(args.from_seq, args.to_seq)
    except ResendUnavailable:
        raise Problem(Code.NOT_IMPLEMENTED, "buffer.resend is not available: buffer.retain is "
                      "not set, so a message is deleted once delivered") from None
    if result["resent"] == 0 and result["already_queued"] == 0:
        raise Problem(Code.NOT_FOUND, f"seq {args.from_seq}..{args.to_seq} is not retained; "
                      f"retained: {result['retained']}")
    return ok(result)


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



# The gateway-identity operations (cert.renew, cert.install, cert.rollback) live with the rest of
# the identity code, the agent update (update.install) in its own module; importing them
# registers them in OPERATIONS above.
from provisioning import ops as _provisioning_ops  # noqa: E402, F401
from agent.commands import update_ops as _update_ops  # noqa: E402, F401
from agent.billing import command as _billing_command  # noqa: E402, F401
