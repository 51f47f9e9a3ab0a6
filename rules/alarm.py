"""The alarm lifecycle: raise, clear, acknowledge, latch, hold back during maintenance.

An `Alarm` follows one rule's condition (level-triggered: the engine hands it the condition
after each evaluation) and emits an event only on a change of the alarm's own state, so a
condition that stays true never raises twice. Rule types never see any of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agent.sdk.models import Value
from rules.builtin.base import human_duration

if TYPE_CHECKING:
    from rules.builtin.base import Rule

EventKind = Literal["raised", "cleared", "acked", "suppressed"]


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One alarm event, as published on `{root}/evt` (see `as_dict`)."""

    kind: EventKind
    alarm: str  # alarm id (= rule id: one alarm per rule)
    rule: str
    rule_type: str
    device: str | None
    point: str | None
    value: Value | None  # what was measured (see the rule type for its meaning)
    threshold: Value | None  # the limit it was compared with, in the same unit
    since: float  # when the situation behind the alarm began (the same for every event of it)
    ts: float  # when this event happened
    severity: str
    message: str
    unit: str | None = None  # unit of value and threshold
    by: str | None = None  # who acknowledged (acked events)

    def as_dict(self) -> dict[str, Any]:
        """`{"type": "alarm.raised", ...}`; keys whose value is None are left out."""
        out: dict[str, Any] = {"type": f"alarm.{self.kind}", "alarm": self.alarm,
                               "rule": self.rule, "rule_type": self.rule_type,
                               "severity": self.severity, "since": self.since, "ts": self.ts,
                               "message": self.message}
        for key in ("device", "point", "value", "threshold", "unit", "by"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class Alarm:
    """State of one alarm; its static fields come from the rule config."""

    __slots__ = (
        "acked",
        "acked_at",
        "acked_by",
        "condition",
        "device",
        "id",
        "latch",
        "message",
        "point",
        "raised",
        "raised_at",
        "rule",
        "rule_type",
        "severity",
        "since",
        "suppressed",
        "threshold",
        "unit",
        "value",
    )

    def __init__(self, alarm_id: str, rule: str, rule_type: str, device: str | None,
                 point: str | None, severity: str, latch: bool) -> None:
        self.id, self.rule, self.rule_type = alarm_id, rule, rule_type
        self.device, self.point, self.severity, self.latch = device, point, severity, latch
        self.condition = False  # last condition the rule reported
        self.raised = False  # a `raised` went out and no `cleared` yet
        self.since: float | None = None
        self.raised_at: float | None = None
        self.acked = False
        self.acked_by: str | None = None
        self.acked_at: float | None = None
        self.suppressed = False  # a `suppressed` went out for the condition now held back
        self.value: Value | None = None
        self.threshold: Value | None = None
        self.unit: str | None = None
        self.message = ""

    # ---- transitions ----------------------------------------------------------------------

    def follow(self, rule: Rule[Any], now: float, held: bool, out: list[AlarmEvent]) -> None:
        """The rule's condition changed to `rule.active`; `held` = device in maintenance."""
        self.condition = rule.active
        if rule.active:
            if self.raised:
                return  # a latched alarm whose condition came back: still the same alarm
            self._snapshot(rule)
            self.since = rule.since if rule.since is not None else now
            if not held:
                self._raise(now, out)
            elif not self.suppressed:
                self.suppressed = True
                out.append(self._event("suppressed", now,
                                       f"held back, {self.device} in maintenance: "
                                       f"{self.message}"))
            return
        self.suppressed = False
        if not self.raised:
            self.since = None  # the condition went away while held back: nothing to undo
            return
        self.value = rule.value
        if self.latch and not self.acked:
            return  # latched: waits for an acknowledgement
        self._clear(now, out)

    def release(self, rule: Rule[Any], now: float, out: list[AlarmEvent]) -> None:
        """Maintenance ended: a condition held back and still true is raised now."""
        self.suppressed = False
        if self.condition and not self.raised:
            self._snapshot(rule)  # the figures of now, not of when it was held back
            self._raise(now, out)

    def ack(self, by: str, now: float, out: list[AlarmEvent]) -> None:
        if not self.raised or self.acked:
            return  # nothing to acknowledge, or already done: no duplicate event
        self.acked, self.acked_by, self.acked_at = True, by, now
        out.append(self._event("acked", now, f"acknowledged by {by}: {self.message}", by=by))
        if not self.condition:
            self._clear(now, out)  # a latched alarm whose condition is already gone

    def drop(self, now: float, reason: str, out: list[AlarmEvent]) -> None:
        """The rule is gone from the config: clear what the backend still shows."""
        if self.raised:
            self.message = f"{reason}: {self.message}"
            self._clear(now, out)

    def _raise(self, now: float, out: list[AlarmEvent]) -> None:
        self.raised, self.raised_at = True, now
        self.acked, self.acked_by, self.acked_at = False, None, None
        self.suppressed = False
        out.append(self._event("raised", now, self.message))

    def _clear(self, now: float, out: list[AlarmEvent]) -> None:
        lasted = human_duration(now - self.since) if self.since is not None else "a while"
        out.append(self._event("cleared", now, f"back to normal after {lasted} "
                                               f"(was: {self.message})"))
        self.raised, self.raised_at, self.since = False, None, None
        self.acked, self.acked_by, self.acked_at = False, None, None

    def _snapshot(self, rule: Rule[Any]) -> None:
        self.value, self.threshold, self.unit = rule.value, rule.threshold, rule.unit
        self.point = rule.point if rule.point is not None else self.point
        self.message = rule.describe()

    def _event(self, kind: EventKind, now: float, message: str,
               by: str | None = None) -> AlarmEvent:
        return AlarmEvent(kind=kind, alarm=self.id, rule=self.rule, rule_type=self.rule_type,
                          device=self.device, point=self.point, value=self.value,
                          threshold=self.threshold, since=self.since if self.since is not None
                          else now, ts=now, severity=self.severity, message=message,
                          unit=self.unit, by=by)

    # ---- views and persistence ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """One entry of the retained `{root}/alarms` snapshot."""
        out = {"alarm": self.id, "rule": self.rule, "rule_type": self.rule_type,
               "device": self.device, "point": self.point, "severity": self.severity,
               "since": self.since, "raised_at": self.raised_at, "value": self.value,
               "threshold": self.threshold, "unit": self.unit, "message": self.message,
               "acked": self.acked, "acked_by": self.acked_by, "acked_at": self.acked_at,
               # latched and waiting for an ack: the condition itself is gone
               "latched": self.latch and not self.condition}
        return {key: value for key, value in out.items() if value is not None}

    _STATE = ("condition", "raised", "since", "raised_at", "acked", "acked_by", "acked_at",
              "suppressed", "value", "threshold", "unit", "message", "device", "point",
              "rule_type", "severity")

    def export(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._STATE}

    def restore(self, data: dict[str, Any], *, static: bool = False) -> None:
        """Dynamic state from `data`; `static` also takes the config-derived fields (for an
        alarm whose rule no longer exists)."""
        for key in self._STATE:
            if key in ("device", "point", "rule_type", "severity") and not static:
                continue
            setattr(self, key, data[key])
        if self.raised and self.since is None:
            raise ValueError("raised alarm without a start time")
