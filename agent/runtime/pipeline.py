"""What happens to a poll's values: normalize, keep the latest, run the rules, enqueue.

    driver values ─► Normalizer ─► SenML pack ─► outbox (telemetry, batched)
                                 └► rules ─► alarm events ─► outbox (committed at once, first out)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from agent.uplink import senml
from agent.config.loader import Config
from agent.sdk.config import DeviceConfig
from agent.sdk.models import DeviceState, PointValue, Reading
from agent.runtime.normalize import Normalizer
from agent.store.outbox import PRIO_ALARM, PRIO_EVENT, PRIO_TELEMETRY, Outbox

log = logging.getLogger(__name__)

RULES_STATE_KEY = "rules_state"


class AlarmEventLike(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class Engine(Protocol):
    def on_reading(self, reading: Reading, now: float) -> list[Any]: ...

    def on_device_state(self, device: str, state: DeviceState, now: float) -> list[Any]: ...

    def tick(self, now: float) -> list[Any]: ...

    def active(self) -> list[dict[str, Any]]: ...

    def export_state(self) -> dict[str, Any]: ...


class Pipeline:
    def __init__(self, config: Config, outbox: Outbox, *, session: int,
                 clock: Callable[[], float], engine: Engine | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.session = session
        self.clock = clock
        self.engine = engine
        self.gateway = config.gateway.id
        self._normalizers = {d.id: Normalizer(d) for d in config.devices}
        self.latest: dict[str, dict[str, Reading]] = {d.id: {} for d in config.devices}
        self.device_states: dict[str, DeviceState] = {d.id: DeviceState.UNKNOWN
                                                      for d in config.devices}
        self.readings_accepted = 0
        self.clock_synced: Callable[[], bool] = lambda: True
        self.billing: Any = None  # agent.billing.Billing: boundary indexes of the meters

    def reconfigure(self, config: Config, engine: Engine | None, fresh: Iterable[str]) -> None:
        """After a live config apply: devices in `fresh` (new or changed) start from nothing;
        the others keep their latest readings and state; removed ones are forgotten."""
        fresh = set(fresh)
        now = self.clock()
        for gone in {d.id for d in self.config.devices} - {d.id for d in config.devices}:
            # The retained state would say "ok" forever: Haystack's `disabled` says it is gone.
            self.outbox.enqueue(f"dev/{gone}/state", {"state": "disabled", "since": round(now, 3),
                                                      "reason": "removed from the configuration"},
                                prio=PRIO_EVENT, sess=self.session, retain=True, ts=now)
        self.config = config
        self.engine = engine
        self._normalizers = {d.id: Normalizer(d) for d in config.devices}
        self.latest = {d.id: {} if d.id in fresh else self.latest.get(d.id, {})
                       for d in config.devices}
        self.device_states = {d.id: DeviceState.UNKNOWN if d.id in fresh else
                              self.device_states.get(d.id, DeviceState.UNKNOWN)
                              for d in config.devices}

    def values(self, device: DeviceConfig, values: list[PointValue], ts: float) -> None:
        readings = self._normalizers[device.id].readings(values, ts, synced=self.clock_synced())
        if not readings:
            return
        latest = self.latest[device.id]
        for reading in readings:
            latest[reading.name] = reading
        self.outbox.enqueue(f"dev/{device.id}/tm",
                            senml.telemetry(self.gateway, device.id, readings),
                            prio=PRIO_TELEMETRY, sess=self.session, ts=ts)
        self.readings_accepted += len(readings)
        # Billing sees the driver's values (the meter's own digits) and adds derived readings
        # (hourly flows) that only the rules see.
        derived = self.billing.observe(device, values, ts) if self.billing is not None else []
        if self.engine is not None:
            events: list[Any] = []
            for reading in [*readings, *derived]:
                events.extend(self.engine.on_reading(reading, ts))
            self.alarm_events(events)

    def device_state(self, device: DeviceConfig, state: DeviceState, reason: str | None) -> None:
        now = self.clock()
        previous = self.device_states.get(device.id, DeviceState.UNKNOWN)
        self.device_states[device.id] = state
        body: dict[str, Any] = {"state": state.value, "since": round(now, 3)}
        if reason:
            body["reason"] = reason
        self.outbox.enqueue(f"dev/{device.id}/state", body, prio=PRIO_EVENT, sess=self.session,
                            retain=True, ts=now)
        if state is DeviceState.DOWN or previous is DeviceState.DOWN:
            event = {"type": f"device.{'down' if state is DeviceState.DOWN else 'up'}",
                     "dev": device.id, **({"reason": reason} if reason else {})}
            self.outbox.enqueue("evt", event, prio=PRIO_EVENT, sess=self.session, ts=now)
        if self.engine is not None:
            self.alarm_events(self.engine.on_device_state(device.id, state, now))

    def tick(self) -> None:
        if self.engine is not None:
            self.alarm_events(self.engine.tick(self.clock()))

    def event(self, body: dict[str, Any]) -> None:
        """A gateway event (buffer overflow, clock jump...) on `evt`."""
        self.outbox.enqueue("evt", body, prio=PRIO_EVENT, sess=self.session, ts=self.clock())

    def alarm_events(self, events: Sequence[AlarmEventLike]) -> None:
        """Alarm events and the engine state that produced them go to disk in one transaction."""
        if not events or self.engine is None:
            return
        now = self.clock()
        for index, event in enumerate(events):
            last = index == len(events) - 1
            meta = {RULES_STATE_KEY: self.engine.export_state()} if last else None
            self.outbox.enqueue("evt", event.as_dict(), prio=PRIO_ALARM, sess=self.session,
                                ts=now, meta=meta)
        self.outbox.enqueue("alarms", {"active": self.engine.active()}, prio=PRIO_ALARM,
                            sess=self.session, retain=True, ts=now)
