"""The agent's one TaskGroup: pollers, outbox committer, uplink, rule ticks, health.

    pollers ──► pipeline ──► outbox ──► uplink ══► broker
                     └─ rules (tick)            ▲
    shutdown trigger ─ commit, bounded drain, offline state, stop everything

Only core failures (the outbox cannot write, a bug in the uplink) end the group and the process;
driver failures stop at the poller's isolation boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent import __version__

from agent.runtime import control
from agent.runtime.control_stats import ControlStats

from agent.runtime import health

from agent.runtime import sdnotify

from agent.sdk import units
from agent.billing import Billing
from agent.sdk.clock import Clock, SystemClock
from agent.commands import CommandHandler
from agent.config.loader import Config
from agent.lifecycle.trial_watch import TrialWatch
from agent.sdk.driver import Driver
from agent.local.history import History
from agent.local.http import Server
from agent.runtime.field import Field
from agent.store.outbox import Outbox
from agent.runtime.pipeline import RULES_STATE_KEY, Pipeline
from agent.runtime.poller import DevicePoller
from agent.config.reconfigure import Plan
from agent.runtime.timesync import TimeKeeper
from agent.uplink.session import Uplink
from agent.runtime.watcher import DeviceWatcher
from agent.wire import Wire

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 3.0  # on a clean stop, how long the backlog may still go out before we leave


class Shutdown(Exception):
    """Raised inside the TaskGroup to stop the agent."""


class Agent:
    """Everything one running agent holds; built by `serve`, read by commands and status."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.started = clock.monotonic()
        self.timekeeper = TimeKeeper(clock)
        buffer = config.buffer
        # Store events raised before the pipeline exists (a disk already full at start fails
        # the session write below): they go out first, as soon as it does.
        self._early_events: list[dict[str, Any]] | None = []
        self.outbox = Outbox(buffer.path, max_bytes=int(buffer.max_mb * 2**20),
                             commit_interval=buffer.commit_interval, clock=clock.time,
                             max_age=buffer.max_age, retain=buffer.retain or 0.0,
                             memory_bytes=int(buffer.memory_mb * 2**20), release=buffer.release,
                             timekeeper=self.timekeeper, on_overflow=self._overflow,
                             on_fault=self._store_fault)
        self.session = self.outbox.next_session()
        self.engine = _rule_engine(config, self.outbox.get_meta(RULES_STATE_KEY))
        self.pipeline = Pipeline(config, self.outbox, session=self.session, clock=clock.time,
                                 engine=self.engine)
        early, self._early_events = self._early_events, None
        for event in early:
            self.pipeline.event(event)
        self.pipeline.clock_synced = self.timekeeper.synced
        self.billing = Billing(config, self.outbox, session=self.session, clock=clock.time,
                               synced=self.timekeeper.synced)
        self.pipeline.billing = self.billing
        self.field = Field(clock, self.pipeline.values, self.pipeline.device_state,
                           self.pipeline.event)
        self.drivers: dict[str, Driver] = self.field.drivers  # read by health and commands
        self.pollers: dict[str, DevicePoller | DeviceWatcher] = self.field.pollers
        self.group: asyncio.TaskGroup | None = None  # the supervisor's, once running
        self.restart_requested = asyncio.Event()  # agent.restart, config.apply: exit, be restarted
        self.control_stats = ControlStats()
        self.local_server: Server | None = None  # agent/local/server.py, when the page is on
        self.local_history: History | None = None
        self.health_failures = 0  # health reports that could not be made (e.g. no descriptor)
        self.commands = CommandHandler(self, clock=clock)
        # Config applies, updates, certificates on probation; their outcomes settle through the
        # handler (evt + the command's final answer). The `trials` task below watches them.
        self.trials = TrialWatch(self, settle=self.commands.settle)
        self.uplink = Uplink(config, self.outbox, session=self.session, birth=self.birth,
                             clock=clock.time, commands=self.commands)
        self.uplink.wire = Wire(self)  # mqtt.profiles besides native
        if "sparkplug" in config.mqtt.profiles:  # its own MQTT session: agent/uplink/sparkplug.py
            from agent.uplink.sparkplug import SparkplugLink  # noqa: PLC0415

            self.uplink.sparkplug = SparkplugLink(self, self.outbox)
        if self.outbox.salvage is not None:  # the file was damaged: say what was kept and lost
            self.pipeline.event({"type": "buffer.salvaged", **self.outbox.salvage.as_dict()})

    def _overflow(self, first: int, last: int, count: int, reason: str = "max_mb") -> None:
        log.warning("outbox: dropped %d telemetry messages (seq %d..%d, %s)", count, first, last,
                    reason)
        self._store_event({"type": "buffer.overflow", "first_seq": first, "last_seq": last,
                           "count": count, "reason": reason})

    def _store_fault(self, reason: str | None) -> None:
        """The disk refuses writes (or takes them again): say so on evt, from memory if need be."""
        self._store_event({"type": "buffer.fault", "reason": reason} if reason else
                          {"type": "buffer.restored"})

    def _store_event(self, event: dict[str, Any]) -> None:
        if self._early_events is not None:
            self._early_events.append(event)
        else:
            self.pipeline.event(event)

    def clock_jumped(self, delta: float) -> None:
        self.pipeline.event({"type": "clock.jump", "delta": round(delta, 3),
                             "synced": self.timekeeper.synced()})

    async def open_field(self) -> None:
        await self.field.open_buses(self.config.buses)
        self.field.add_pollers(self.config, (d.id for d in self.config.devices))

    async def apply_config(self, new: Config, changes: Plan) -> None:
        """Bring the running agent to `new` (no restart section changed), touching only the buses,
        devices and rules `changes` names; then a new birth tells the backend."""
        await self.field.stop_pollers(changes.stop_devices)
        await self.field.close_buses(changes.close_buses)
        if new.log_level != self.config.log_level:
            logging.getLogger().setLevel(new.log_level.upper())
        self.config = new
        await self.field.open_buses(b for b in new.buses if b.id in changes.open_buses)
        if changes.rules:
            # Timers and alarms carry over through the exported state, as across a restart.
            state = self.engine.export_state() if self.engine is not None else None
            had_rules = self.engine is not None
            self.engine = _rule_engine(new, state)
            if self.engine is not None and not had_rules and self.group is not None:
                self.group.create_task(self.tick_rules(), name="rules")
        self.pipeline.reconfigure(new, self.engine, changes.start_devices)
        self.billing.configure(new)
        self.field.add_pollers(new, changes.start_devices)
        log.info("config %s applied live: %s", new.digest, changes.as_dict())
        await self.uplink.rebirth()

    def birth(self) -> dict[str, Any]:
        return {
            "v": 1, "gw": self.config.gateway.id, "site": self.config.gateway.site,
            "sess": self.session, "ts": round(self.clock.time(), 3), "agent": __version__,
            "config": self.config.digest,
            "devices": [{
                "id": d.id, "bus": d.bus, "profile": d.profile, "poll": d.poll,
                **_billing_keys(d),
                "points": [{"n": p.name, "u": _senml_unit(p.unit), "writable": p.writable,
                            **_semantic(p)} for p in d.points],
            } for d in self.config.devices],
            "rules": [{"id": r.id, "type": r.type, "severity": r.severity}
                      for r in self.config.rules],
            "commands": CommandHandler.operations(),
            "command_auth": self.commands.auth,
        }

    def health(self) -> dict[str, Any]:
        return {
            "v": 1, "gw": self.config.gateway.id, "sess": self.session,
            "ts": round(self.clock.time(), 3),
            "uptime": round(self.clock.monotonic() - self.started, 1),
            "outbox": self.outbox.stats(),
            "buses": {bus_id: drv.stats.as_dict() for bus_id, drv in self.drivers.items()},
            "devices": {dev_id: {"state": p.state.value, "polls": p.stats.polls,
                                 "failures": p.stats.failures, "overruns": p.stats.overruns}
                        for dev_id, p in self.pollers.items()},
            "mqtt": {"connections": self.uplink.connections, "published": self.uplink.published,
                     "refused": self.uplink.refused, "acks_refused": self.uplink.acks.refused,
                     "oversized": self.uplink.oversized,
                     **({"sparkplug": self.uplink.sparkplug.stats()}
                        if self.uplink.sparkplug is not None else {})},
            "billing": {"meters": len(self.billing.meters), "indexes": self.billing.indexes_made,
                        "unsynced_skipped": self.billing.unsynced_skipped,
                        "kept_existing": self.billing.kept_existing,
                        "stored_other_unit": self.billing.stored_other_unit},
            "control": self.control_stats.as_dict(),
            "health_failures": self.health_failures,
            "cpu_s": round(time.process_time(), 2), "pid": os.getpid(),
            "command_auth": self.commands.auth,
            **({"rules": {"disabled": self.engine.disabled()}} if self.engine is not None else {}),
        }

    async def publish_health(self) -> None:
        while True:
            await asyncio.sleep(self.config.health.interval)
            try:
                body = health.report(self)
            except OSError as exc:  # EMFILE and the like: skip one report, never the agent
                self.health_failures += 1
                log.warning("health report skipped: %s", exc)
                continue
            await self.uplink.publish_direct("health", body)

    async def tick_rules(self) -> None:
        """Time-driven alarms (on-delays, stale data, held states): wake when the engine says the
        next one is due, at most a second late so that new readings' deadlines are seen."""
        while self.engine is not None:  # a config apply may remove every rule
            self.pipeline.tick()
            deadline = self.engine.next_deadline()
            now = self.clock.time()
            await asyncio.sleep(1.0 if deadline is None else min(1.0, max(0.0, deadline - now)))

    async def stop_on(self, trigger: Callable[[], Awaitable[object]]) -> None:
        stop = asyncio.ensure_future(trigger())
        restart = asyncio.ensure_future(self.restart_requested.wait())
        try:
            await asyncio.wait((stop, restart), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            restart.cancel()
        log.info("stopping: committing and draining the outbox for up to %.0fs", DRAIN_TIMEOUT)
        # Timers and windows of the rules go to disk too, so a restart resumes them.
        self.outbox.commit({RULES_STATE_KEY: self.engine.export_state()} if self.engine else None)
        if self.uplink.connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    await self.outbox.emptied.wait()
        await self.uplink.graceful_offline()
        raise Shutdown


def _billing_keys(device: Any) -> dict[str, Any]:
    """`dwelling` and `medium` of a meter (agent/billing), when the config gives them."""
    from agent.billing.meters import medium_of  # noqa: PLC0415

    out = {"dwelling": device.dwelling, "medium": medium_of(device)}
    return {k: v for k, v in out.items() if v is not None}


def _senml_unit(unit: str | None) -> str | None:
    return units.normalize(unit)[0]


def _semantic(point: Any) -> dict[str, Any]:
    """Brick class and Haystack tags when the point (or its profile) declares them."""
    out: dict[str, Any] = {}
    for key in ("kind", "brick", "haystack"):
        value = getattr(point, key, None)
        if value:
            out[key] = value
    return out


def _rule_engine(config: Config, state: dict[str, Any] | None) -> Any:
    raised = any(a.get("raised") for a in (state or {}).get("alarms", {}).values())
    if not config.rules and not raised:
        return None
    # Without rules but with raised alarms (their rules were removed), an engine still runs:
    # it clears them, so the backend does not keep stale alarms.
    from rules.engine import RuleEngine  # noqa: PLC0415 - the rules package is optional at import

    engine = RuleEngine(config.rules, state)
    for problem in engine.restore_problems:
        log.warning("alarm state: %s", problem)
    return engine


async def serve(config: Config, *, shutdown_trigger: Callable[[], Awaitable[object]],
                clock: Clock | None = None, ready: Callable[[Agent], None] | None = None) -> bool:
    """Run the agent until `shutdown_trigger` returns; True when a command asked for a restart."""
    agent = Agent(config, clock or SystemClock())
    if config.mqtt.tls is None:
        log.warning("TLS is OFF for %s:%d (tls: false): lab brokers only", config.mqtt.host,
                    config.mqtt.port)
    try:
        await agent.open_field()
        if ready is not None:
            ready(agent)
        sdnotify.ready(f"running: {len(agent.pollers)} devices, session {agent.session}")
        try:
            async with asyncio.TaskGroup() as tg:
                agent.group = tg
                tg.create_task(agent.stop_on(shutdown_trigger), name="shutdown")
                tg.create_task(agent.uplink.run(), name="uplink")
                if agent.uplink.sparkplug is not None:
                    tg.create_task(agent.uplink.sparkplug.run(), name="uplink-sparkplug")
                tg.create_task(agent.outbox.commit_periodically(), name="commit")
                tg.create_task(agent.timekeeper.watch(agent.outbox.clock_synced,
                                                      agent.clock_jumped), name="clock")
                tg.create_task(agent.publish_health(), name="health")
                tg.create_task(agent.commands.run(), name="commands")
                tg.create_task(agent.trials.run(), name="trials")
                tg.create_task(control.serve(agent), name="control")
                if config.local.listen:
                    from agent.local import server as local  # noqa: PLC0415 - only when on

                    tg.create_task(local.serve(agent), name="local")
                tg.create_task(sdnotify.watchdog(), name="watchdog")
                if agent.engine is not None:
                    tg.create_task(agent.tick_rules(), name="rules")
                agent.field.start(tg)
        except* Shutdown:
            log.info("stopped (session %d)", agent.session)
    finally:
        await agent.field.close()
        agent.outbox.close()
    return agent.restart_requested.is_set()
