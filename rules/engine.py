"""The rule engine: routes readings, device states and time to the rules, runs the alarms.

Pure and synchronous: every call receives `now` (wall-clock epoch seconds, the time base of
`since`/`ts` and of persisted state), nothing here does I/O, sleeps or reads a clock. The agent
owns persistence (`export_state`) and publishing (the returned events).

Cost: a reading costs one dict lookup per level (device, point) plus the rules of that point;
time-driven work sits in a heap keyed by each rule's next deadline, so `tick` touches only rules
that are due and `next_deadline` tells the agent how long it may sleep.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import Any

from agent import registry
from agent.config_models import RuleConfig
from agent.models import DeviceState, Reading
from rules.alarm import Alarm, AlarmEvent
from rules.builtin.base import Rule

STATE_VERSION = 1
_MIN_STEP = 1e-3  # a deadline at or before `now` after a tick is a rule bug: never spin on it
_NOT_STATE = frozenset({"id", "severity", "latch"})  # config keys that leave the rule state valid


class _Slot:
    """One rule with its alarm and the deadline it currently has in the heap."""

    __slots__ = ("alarm", "fingerprint", "rule", "scheduled")

    def __init__(self, rule: Rule[Any], alarm: Alarm, fingerprint: str) -> None:
        self.rule, self.alarm, self.fingerprint = rule, alarm, fingerprint
        self.scheduled: float | None = None


def _fingerprint(config: RuleConfig) -> str:
    data = config.model_dump(mode="json", by_alias=True, exclude=set(_NOT_STATE))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class RuleEngine:
    """All rules of a gateway. Not thread-safe: one task owns it."""

    def __init__(self, rules: Sequence[RuleConfig], state: Mapping[str, Any] | None = None, *,
                 tz: tzinfo | None = None) -> None:
        """Build the rules; `state` is a previous `export_state()`. `tz` is the building's zone
        for night windows and days (None = the system's local zone)."""
        self._tz = tz
        self._slots: dict[str, _Slot] = {}
        self._by_point: dict[str, dict[str, list[_Slot]]] = {}
        self._by_device: dict[str, list[_Slot]] = {}  # rules on dev/*
        self._by_state: dict[str, list[_Slot]] = {}  # rules on device state changes
        self._of_device: dict[str, list[_Slot]] = {}  # every alarm of a device (maintenance)
        self._heap: list[tuple[float, int, _Slot]] = []
        self._seq = itertools.count()
        self._maintenance: dict[str, float] = {}
        self._orphans: list[Alarm] = []  # restored alarms whose rule is gone
        self._started = False
        self._last_now: float | None = None
        self.restore_problems: list[str] = []  # for the agent to log; the engine does no I/O
        for config in rules:
            self._add(config)
        if state:
            self._restore(state)

    # ---- construction -------------------------------------------------------------------

    def _build(self, config: RuleConfig) -> Rule[Any]:
        rule_type = registry.load(registry.RULES, config.type)
        return rule_type(config, tz=self._tz)

    def _add(self, config: RuleConfig) -> None:
        if config.id in self._slots:
            raise ValueError(f"rule id {config.id!r} is used twice")
        rule = self._build(config)
        alarm = Alarm(config.id, config.id, config.type, rule.device, rule.point,
                      config.severity, bool(getattr(config, "latch", False)))
        slot = _Slot(rule, alarm, _fingerprint(config))
        self._slots[config.id] = slot
        for ref in rule.watches():
            device, _, name = ref.partition("/")
            if name == "*":
                self._by_device.setdefault(device, []).append(slot)
            else:
                self._by_point.setdefault(device, {}).setdefault(name, []).append(slot)
        if rule.wants_device_state and rule.device:
            self._by_state.setdefault(rule.device, []).append(slot)
        if rule.device:
            self._of_device.setdefault(rule.device, []).append(slot)

    def _restore(self, state: Mapping[str, Any]) -> None:
        if state.get("v") != STATE_VERSION:
            self.restore_problems.append(f"alarm state version {state.get('v')!r} unknown: "
                                         "starting from a clean state")
            return
        self._maintenance = {str(dev): float(until)
                             for dev, until in state.get("maintenance", {}).items()}
        for alarm_id, data in state.get("alarms", {}).items():
            slot = self._slots.get(alarm_id)
            try:
                if slot is not None:
                    slot.alarm.restore(data)
                elif data.get("raised"):
                    orphan = Alarm(alarm_id, alarm_id, "", None, None, "", False)
                    orphan.restore(data, static=True)
                    self._orphans.append(orphan)
            except (KeyError, TypeError, ValueError) as exc:
                self.restore_problems.append(f"alarm {alarm_id}: state unreadable ({exc!r})")
        for rule_id, entry in state.get("rules", {}).items():
            slot = self._slots.get(rule_id)
            if slot is None:
                continue
            if entry.get("fp") != slot.fingerprint:
                # New parameters: the old state means something else. The alarm stays as it was
                # and follows the fresh rule from its first evaluation on.
                continue
            try:
                slot.rule.restore_state(entry["state"])
            except (KeyError, TypeError, ValueError) as exc:
                self.restore_problems.append(f"rule {rule_id}: state unreadable ({exc!r})")
                slot.rule = self._build(slot.rule.config)

    def _start(self, now: float, out: list[AlarmEvent]) -> None:
        """First call with a time: arm the rules, settle restored alarms, clear orphans."""
        self._started = True
        for orphan in self._orphans:
            orphan.drop(now, "rule removed from the configuration", out)
        self._orphans.clear()
        for slot in self._slots.values():
            slot.rule.start(now)
            self._follow(slot, now, out)

    # ---- inputs ---------------------------------------------------------------------------

    def on_reading(self, reading: Reading, now: float) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        if not self._started:
            self._start(now, out)
        self._last_now = now
        points = self._by_point.get(reading.device)
        if points is not None:
            slots = points.get(reading.name)
            if slots is not None:
                for slot in slots:
                    slot.rule.on_reading(reading, now)
                    self._follow(slot, now, out)
        slots = self._by_device.get(reading.device)
        if slots is not None:
            for slot in slots:
                slot.rule.on_reading(reading, now)
                self._follow(slot, now, out)
        return out

    def on_device_state(self, device: str, state: DeviceState, now: float) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        if not self._started:
            self._start(now, out)
        self._last_now = now
        for slot in self._by_state.get(device, ()):
            slot.rule.on_device_state(device, state, now)
            self._follow(slot, now, out)
        return out

    def tick(self, now: float) -> list[AlarmEvent]:
        """Time-driven work due at `now`: delays, silences, windows, maintenance ends."""
        out: list[AlarmEvent] = []
        if not self._started:
            self._start(now, out)
        self._last_now = now
        heap = self._heap
        due: list[_Slot] = []
        while heap and heap[0][0] <= now:
            deadline, _, slot = heapq.heappop(heap)
            if slot.scheduled == deadline:  # else a stale heap entry: the slot moved on
                slot.scheduled = None
                due.append(slot)
        for slot in due:
            slot.rule.tick(now)
            self._follow(slot, now, out)
        for device, until in list(self._maintenance.items()):
            if until <= now:
                del self._maintenance[device]
                self._release(device, now, out)
        return out

    # ---- operator actions -----------------------------------------------------------------

    def ack(self, alarm: str, by: str, now: float) -> list[AlarmEvent]:
        """Acknowledge; KeyError for an unknown alarm id. An alarm not raised, or already
        acknowledged, gives no event."""
        slot = self._slots.get(alarm)
        if slot is None:
            raise KeyError(f"unknown alarm {alarm!r}")
        out: list[AlarmEvent] = []
        if not self._started:
            self._start(now, out)
        slot.alarm.ack(by, now, out)
        return out

    def set_maintenance(self, device: str, until: float | None,
                        now: float) -> list[AlarmEvent]:
        """Hold back the device's new alarms until `until`; None (or a past time) ends it, and
        what was held back and is still true is raised then. Raised alarms stay raised and
        clear normally. The agent checks that `device` exists."""
        out: list[AlarmEvent] = []
        if not self._started:
            self._start(now, out)
        if until is None or until <= now:
            if self._maintenance.pop(device, None) is not None:
                self._release(device, now, out)
        else:
            self._maintenance[device] = until
        return out

    def _release(self, device: str, now: float, out: list[AlarmEvent]) -> None:
        for slot in self._of_device.get(device, ()):
            slot.rule.tick(now)  # bring time-driven figures (how long) up to `now` first
            self._follow(slot, now, out)
            slot.alarm.release(slot.rule, now, out)

    # ---- views ----------------------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        """Raised alarms (acked or not, latched ones waiting for an ack), for `{root}/alarms`.
        Alarms held back by maintenance are not in it: they were never raised."""
        return [slot.alarm.snapshot() for slot in self._slots.values() if slot.alarm.raised]

    def maintenance(self) -> dict[str, float]:
        """Devices in maintenance and when it ends."""
        return dict(self._maintenance)

    def next_deadline(self) -> float | None:
        """Earliest time `tick` has work (may be early, never late); None: nothing is timed, or
        the engine has not been given a time yet (call tick once at start-up)."""
        if not self._started:
            return None
        heap = self._heap
        while heap and heap[0][2].scheduled != heap[0][0]:
            heapq.heappop(heap)
        times = [heap[0][0]] if heap else []
        if self._maintenance:
            times.append(min(self._maintenance.values()))
        return min(times) if times else None

    def export_state(self) -> dict[str, Any]:
        """JSON-serializable; `RuleEngine(rules, state)` resumes from it."""
        return {
            "v": STATE_VERSION,
            "saved_at": self._last_now,
            "maintenance": dict(self._maintenance),
            # only alarms with something to remember: a quiet one restores as a new one
            "alarms": {aid: slot.alarm.export() for aid, slot in self._slots.items()
                       if slot.alarm.condition or slot.alarm.raised},
            "rules": {rid: {"fp": slot.fingerprint, "state": slot.rule.export_state()}
                      for rid, slot in self._slots.items()},
        }

    # ---- glue -----------------------------------------------------------------------------

    def _follow(self, slot: _Slot, now: float, out: list[AlarmEvent]) -> None:
        """After a rule evaluation: alarm transition if its condition changed, then schedule."""
        rule = slot.rule
        if rule.active != slot.alarm.condition:
            device = slot.alarm.device
            until = self._maintenance.get(device) if device is not None else None
            slot.alarm.follow(rule, now, until is not None and until > now, out)
        deadline = rule.next_deadline()
        if deadline is not None and (slot.scheduled is None or deadline < slot.scheduled):
            if deadline <= now:
                deadline = now + _MIN_STEP
            slot.scheduled = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), slot))
