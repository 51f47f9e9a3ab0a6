"""`remote config apply FILE GATEWAY`: what a careful operator does by hand, in one verb.

    validate FILE here ─► config.get ─► diff + planned changes (live or restart) ─► go?
    ─► config.apply (in_progress) ─► settle: back online (a restart), commands answer,
       no device of the new file down ─► config.confirm ─► final answer `succeeded`
                                      └► not healthy: no confirm; the gateway rolls back
                                         by itself at confirm_before, final answer `failed`

The plan is computed here from the two effective configs with the gateway's own rule
(agent/config/reconfigure.py: which sections restart the agent, which buses, devices and rules are
restarted live). Secrets are masked on both sides, so a password change shows as no change.
"""

from __future__ import annotations

import asyncio
import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.config import loader as config_mod
from agent.config.reconfigure import RESTART_SECTIONS
from agent.config.redact import effective
from agent.remote.commands import Sender, Target
from agent.remote.link import Link, Received, drain_retained

SECTIONS = ("gateway", "mqtt", "buffer", "commands", "control", "update", "health", "log_level",
            "buses", "devices", "rules")


@dataclass
class Plan:
    restart: list[str] = field(default_factory=list)
    buses: dict[str, list[str]] = field(default_factory=dict)  # added / removed / changed
    devices: dict[str, list[str]] = field(default_factory=dict)
    rules: bool = False
    other: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.restart or any(self.buses.values()) or any(self.devices.values())
                    or self.rules or self.other)

    def as_dict(self) -> dict[str, Any]:
        return {"restart": self.restart, "buses": self.buses, "devices": self.devices,
                "rules": self.rules, "other": self.other}

    def lines(self) -> list[str]:
        if self.empty:
            return ["no change"]
        out = []
        if self.restart:
            out.append(f"the agent restarts: {', '.join(self.restart)} changed")
        for what, table in (("bus", self.buses), ("device", self.devices)):
            for change, ids in table.items():
                if ids:
                    out.append(f"{what} {change} live: {', '.join(ids)}")
        if self.rules:
            out.append("rules rebuilt live")
        if self.other:
            out.append(f"live: {', '.join(self.other)}")
        return out


def sections(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in SECTIONS if k in doc}


def _by_id(items: Any) -> dict[str, Any]:
    return {str(i.get("id")): i for i in items or [] if isinstance(i, dict)}


def plan(old: dict[str, Any], new: dict[str, Any]) -> Plan:
    """What the gateway will do, from the two effective configs (agent/reconfigure.plan's rule
    on data instead of models)."""
    result = Plan(restart=[s for s in RESTART_SECTIONS if old.get(s) != new.get(s)])
    for name, attr in (("buses", "buses"), ("devices", "devices")):
        before, after = _by_id(old.get(name)), _by_id(new.get(name))
        getattr(result, attr).update({
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": sorted(i for i in before.keys() & after.keys() if before[i] != after[i])})
    # A device on a changed bus restarts with it.
    moved = set(result.buses["changed"]) | set(result.buses["removed"])
    riding = sorted(i for i, d in _by_id(new.get("devices")).items()
                    if d.get("bus") in moved and i not in result.devices["changed"])
    result.devices["changed"] = sorted(set(result.devices["changed"]) | set(riding))
    result.rules = old.get("rules") != new.get("rules") or any(result.devices.values())
    result.other = [s for s in ("health", "log_level", "update")
                    if old.get(s) != new.get(s)]
    return result


def diff(old: dict[str, Any], new: dict[str, Any], label: str) -> list[str]:
    def text(doc: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).splitlines()
    return list(difflib.unified_diff(text(old), text(new), "gateway (running)", label,
                                     lineterm=""))


def prepare(text: str, label: str, running: dict[str, Any]) -> tuple[dict[str, Any], Plan,
                                                                      list[str]]:
    """Validate the new file here (ConfigError lists every problem) and compare it with the
    running config from `config.get`."""
    new = sections(effective(config_mod.parse(text, label)))
    old = sections(running)
    return new, plan(old, new), diff(old, new, label)


@dataclass
class Health:
    ok: bool
    reasons: list[str]


async def settle(link: Link, sender: Sender, target: Target, *, devices: list[str],
                 restart: bool, old_sess: int | None, seconds: float) -> Health:
    """After an apply: the gateway online (a new session when it restarted), answering
    commands, and none of `devices` down after `seconds`."""
    root = link.root(target.site, target.gateway)
    states: dict[str, str] = {}
    online: dict[str, Any] = {}

    def take(seen: Received) -> None:
        body = seen.body if isinstance(seen.body, dict) else {}
        parts = seen.topic.split("/")
        if parts[-1] == "state" and parts[-3] == "dev":
            states[parts[-2]] = str(body.get("state"))
        elif seen.topic == f"{root}/state":
            online.update(body)

    queue = await link.listen(f"{root}/#")
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    await drain_retained(queue, on=take, limit=min(5.0, seconds))
    while (left := end - loop.time()) > 0:  # watch the devices settle for the whole window
        try:
            take(await asyncio.wait_for(queue.get(), left))
        except TimeoutError:
            break
    reasons = []
    if not online.get("online"):
        reasons.append("the gateway is offline")
    elif restart and old_sess is not None and online.get("sess") == old_sess:
        reasons.append("the gateway has not restarted on the new config")
    ping = await sender.run(target, "ping", {})
    if not ping.ok:
        reasons.append(f"ping: {ping.status} {ping.error or ''}".strip())
    down = sorted(d for d in devices if states.get(d) == "down")
    if down:
        reasons.append(f"devices down: {', '.join(down)}")
    return Health(not reasons, reasons)
