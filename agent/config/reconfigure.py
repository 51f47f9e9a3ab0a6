"""What a new config changes in the running agent, and whether that can happen without a restart.

Live: `buses`, `devices`, `rules`, `health`, `log_level`. A bus whose settings changed is closed
and opened again with its devices; a device whose settings changed gets a new poller; every other
bus keeps its connection and every other device its poller and schedule. The rules are rebuilt
from their exported state, so raised alarms and running timers carry over (a rule whose parameters
changed starts afresh; the alarms of a removed rule are cleared).

Restart: `gateway`, `mqtt`, `buffer`, `commands`, `control`, `billing`. The broker session, the outbox file
and the command channel are opened once per process, and changing them under a running
connection would be the risky path; the agent restarts (systemd brings it back) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.config.loader import Config

RESTART_SECTIONS = ("gateway", "mqtt", "buffer", "commands", "control", "billing", "local")


@dataclass(frozen=True)
class Plan:
    restart: tuple[str, ...]  # sections that changed and need a restart
    close_buses: frozenset[str]  # removed or changed
    open_buses: frozenset[str]  # added or changed
    stop_devices: frozenset[str]  # removed, changed, or on a reopened bus
    start_devices: frozenset[str]  # added, changed, or on a reopened bus
    rules: bool  # the rule set must be rebuilt
    kept_devices: int  # pollers that keep running untouched

    def as_dict(self) -> dict[str, Any]:
        return {"restart": list(self.restart), "buses": sorted(self.close_buses | self.open_buses),
                "devices": sorted(self.stop_devices | self.start_devices),
                "rules": self.rules, "kept_devices": self.kept_devices}


def plan(old: Config, new: Config) -> Plan:
    restart = tuple(s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s))
    old_buses = {b.id: b for b in old.buses}
    new_buses = {b.id: b for b in new.buses}
    changed_buses = {i for i in old_buses.keys() & new_buses.keys() if old_buses[i] != new_buses[i]}
    close = (old_buses.keys() - new_buses.keys()) | changed_buses
    open_ = (new_buses.keys() - old_buses.keys()) | changed_buses
    old_devices = {d.id: d for d in old.devices}
    new_devices = {d.id: d for d in new.devices}
    stop = {i for i, d in old_devices.items()
            if new_devices.get(i) != d or d.bus in close}
    start = {i for i, d in new_devices.items()
             if old_devices.get(i) != d or d.bus in open_}
    # Rules read devices (profile rules, device-wide rules), so a device change rebuilds them too.
    rules = old.rules != new.rules or bool(stop or start)
    return Plan(restart=restart, close_buses=frozenset(close), open_buses=frozenset(open_),
                stop_devices=frozenset(stop), start_devices=frozenset(start), rules=rules,
                kept_devices=len(old_devices.keys() - stop))
