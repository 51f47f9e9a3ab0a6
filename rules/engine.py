"""The rule engine: routes readings, device states and time to the rules, runs the alarms.

Pure and synchronous: every call receives `now` (wall-clock epoch seconds, the time base of
`since`/`ts` and of persisted state), nothing here does I/O, sleeps or reads a clock. The agent
owns persistence (`export_state`) and publishing (the returned events).

Cost: a reading costs one dict lookup per level (device, point) plus the rules of that point;
time-driven work sits in a heap keyed by each rule's next deadline, so `tick` touches only rules
that are due and `next_deadline` tells the agent how long it may sleep.

Rule types are plugins (entry points, like drivers), so the engine is their isolation boundary:
a rule whose code raises, when built, fed or asked for its state, is disabled; the engine
returns one `rule.disabled` event for it (published on `evt`), lists it in `disabled()` (for
`health`) and keeps running every other rule. Its alarm keeps its last state: a false "cleared"
would be worse than a stale "raised", and the event says why it no longer moves. Disabling is
not persisted: a restart (or an agent update that fixes the rule type) tries the rule again.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from agent.sdk import registry
from agent.sdk.config import RuleConfig
from agent.sdk.models import DeviceState, Reading
from rules.alarm import Alarm, AlarmEvent
from rules.builtin.base import Rule

log = logging.getLogger(__name__)

STATE_VERSION = 1
_MIN_STEP = 1e-3  # a deadline at or before `now` after a tick is a rule bug: never spin on it
_NOT_STATE = frozenset({"id", "severity", "latch"})  # config keys that leave the rule state valid


@dataclass(frozen=True, slots=True)
class RuleDisabled:
    """A rule whose code raised: disabled until the agent restarts (published on `evt`)."""

    rule: str
    rule_type: str
    error: str  # repr of what the rule raised, bounded
    ts: float

    def as_dict(self) -> dict[str, Any]:
        return {"type": "rule.disabled", "rule": self.rule, "rule_type": self.rule_type,
                "reason": self.error, "ts": self.ts}


EngineEvent = AlarmEvent | RuleDisabled

_ERROR_CHARS = 300  # a rule's exception text goes on `evt`: bounded like any input


class _Slot:
    """One rule with its alarm and the deadline it currently has in the heap."""

    __slots__ = ("alarm", "disabled", "fingerprint", "rule", "scheduled")

    def __init__(self, rule: Rule[Any], alarm: Alarm, fingerprint: str) -> None:
        self.rule, self.alarm, self.fingerprint = rule, alarm, fingerprint
        self.scheduled: float | None = None
        self.disabled: str | None = None  # why, once the rule's code raised


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
        self._unreported: list[_Slot] = []  # disabled, their `rule.disabled` not yet returned
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
        try:
            rule = self._build(config)
            watches = list(rule.watches())
        except KeyError:
            raise  # an unknown rule type: a config error, refused with the installed names
        except Exception as exc:  # the boundary: a rule type that cannot even be built
            rule = Rule(config)  # inert stand-in that carries the ids of the alarm
            watches = []
            self._slots[config.id] = slot = _Slot(rule, self._alarm(config, rule),
                                                  _fingerprint(config))
            self._disable(slot, exc)
            return
        slot = _Slot(rule, self._alarm(config, rule), _fingerprint(config))
        self._slots[config.id] = slot
        for ref in watches:
            device, _, name = ref.partition("/")
            if name == "*":
                self._by_device.setdefault(device, []).append(slot)
            else:
                self._by_point.setdefault(device, {}).setdefault(name, []).append(slot)
        if rule.wants_device_state and rule.device:
            self._by_state.setdefault(rule.device, []).append(slot)
        if rule.device:
            self._of_device.setdefault(rule.device, []).append(slot)

    @staticmethod
    def _alarm(config: RuleConfig, rule: Rule[Any]) -> Alarm:
        return Alarm(config.id, config.id, config.type, rule.device, rule.point,
                     config.severity, bool(getattr(config, "latch", False)))

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
            if slot.disabled is not None:
                continue
            try:
                slot.rule.restore_state(entry["state"])
            except (KeyError, TypeError, ValueError) as exc:
                self.restore_problems.append(f"rule {rule_id}: state unreadable ({exc!r})")
                try:
                    slot.rule = self._build(slot.rule.config)
                except Exception as again:  # the boundary, as in _add  # noqa: BLE001
                    self._disable(slot, again)
            except Exception as exc:  # the boundary: a rule bug, not a bad state  # noqa: BLE001
                self._disable(slot, exc)

    def _start(self, now: float, out: list[EngineEvent]) -> None:
        """First call with a time: arm the rules, settle restored alarms, clear orphans."""
        self._started = True
        for orphan in self._orphans:
            orphan.drop(now, "rule removed from the configuration", out)
        self._orphans.clear()
        for slot in self._slots.values():
            self._run(slot, slot.rule.start, now, out=out)

    # ---- inputs ---------------------------------------------------------------------------

    def on_reading(self, reading: Reading, now: float) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        if not self._started:
            self._start(now, out)
        self._last_now = now
        points = self._by_point.get(reading.device)
        if points is not None:
            slots = points.get(reading.name)
            if slots is not None:
                for slot in slots:
                    self._run(slot, slot.rule.on_reading, reading, now, out=out)
        slots = self._by_device.get(reading.device)
        if slots is not None:
            for slot in slots:
                self._run(slot, slot.rule.on_reading, reading, now, out=out)
        return self._reported(now, out)

    def on_device_state(self, device: str, state: DeviceState, now: float) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        if not self._started:
            self._start(now, out)
        self._last_now = now
        for slot in self._by_state.get(device, ()):
            self._run(slot, slot.rule.on_device_state, device, state, now, out=out)
        return self._reported(now, out)

    def tick(self, now: float) -> list[EngineEvent]:
        """Time-driven work due at `now`: delays, silences, windows, maintenance ends."""
        out: list[EngineEvent] = []
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
            self._run(slot, slot.rule.tick, now, out=out)
        for device, until in list(self._maintenance.items()):
            if until <= now:
                del self._maintenance[device]
                self._release(device, now, out)
        return self._reported(now, out)

    # ---- operator actions -----------------------------------------------------------------

    def ack(self, alarm: str, by: str, now: float) -> list[EngineEvent]:
        """Acknowledge; KeyError for an unknown alarm id. An alarm not raised, or already
        acknowledged, gives no event."""
        slot = self._slots.get(alarm)
        if slot is None:
            raise KeyError(f"unknown alarm {alarm!r}")
        out: list[EngineEvent] = []
        if not self._started:
            self._start(now, out)
        slot.alarm.ack(by, now, out)
        return self._reported(now, out)

    def set_maintenance(self, device: str, until: float | None,
                        now: float) -> list[EngineEvent]:
        """Hold back the device's new alarms until `until`; None (or a past time) ends it, and
        what was held back and is still true is raised then. Raised alarms stay raised and
        clear normally. The agent checks that `device` exists."""
        out: list[EngineEvent] = []
        if not self._started:
            self._start(now, out)
        if until is None or until <= now:
            if self._maintenance.pop(device, None) is not None:
                self._release(device, now, out)
        else:
            self._maintenance[device] = until
        return self._reported(now, out)

    def _release(self, device: str, now: float, out: list[EngineEvent]) -> None:
        for slot in self._of_device.get(device, ()):
            # bring time-driven figures (how long) up to `now` first
            self._run(slot, slot.rule.tick, now, out=out)
            if slot.disabled is None:
                self._run(slot, lambda: slot.alarm.release(slot.rule, now, out), now=now,
                          out=out, follow=False)

    # ---- views ----------------------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        """Raised alarms (acked or not, latched ones waiting for an ack), for `{root}/alarms`.
        Alarms held back by maintenance are not in it: they were never raised."""
        return [slot.alarm.snapshot() for slot in self._slots.values() if slot.alarm.raised]

    def disabled(self) -> dict[str, str]:
        """Rules disabled because their code raised, and what it raised (for `health`)."""
        return {rid: slot.disabled for rid, slot in self._slots.items()
                if slot.disabled is not None}

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
            "rules": self._rule_states(),
        }

    def _rule_states(self) -> dict[str, Any]:
        states: dict[str, Any] = {}
        for rid, slot in self._slots.items():
            if slot.disabled is not None:
                continue
            try:
                state = slot.rule.export_state()
                json.dumps(state)  # what cannot be saved would fail the outbox commit later
            except Exception as exc:  # the boundary; reported with the next call's events  # noqa: BLE001
                self._disable(slot, exc)
                continue
            states[rid] = {"fp": slot.fingerprint, "state": state}
        return states

    # ---- glue -----------------------------------------------------------------------------

    def _run(self, slot: _Slot, call: Callable[..., Any], *args: Any, now: float | None = None,
             out: list[EngineEvent], follow: bool = True) -> None:
        """One call into a rule's code, then `_follow`, inside the isolation boundary."""
        if slot.disabled is not None:
            return
        when = args[-1] if now is None else now
        try:
            call(*args)
            if follow:
                self._follow(slot, when, out)
        except Exception as exc:  # the boundary: this rule stops, the others go on  # noqa: BLE001
            self._disable(slot, exc)

    def _disable(self, slot: _Slot, exc: BaseException) -> None:
        log.error("rule %s (%s) raised %r: disabled until the agent restarts",
                  slot.alarm.rule, slot.alarm.rule_type, exc, exc_info=exc)
        slot.disabled = repr(exc)[:_ERROR_CHARS]
        slot.scheduled = None  # its heap entries go stale and are skipped
        self._unreported.append(slot)

    def _reported(self, now: float, out: list[EngineEvent]) -> list[EngineEvent]:
        """`out` plus one `rule.disabled` for each rule disabled since the last call."""
        for slot in self._unreported:
            out.append(RuleDisabled(slot.alarm.rule, slot.alarm.rule_type,
                                    slot.disabled or "", now))
        self._unreported.clear()
        return out

    def _follow(self, slot: _Slot, now: float, out: list[EngineEvent]) -> None:
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
