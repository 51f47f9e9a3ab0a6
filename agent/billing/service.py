"""`Billing`: the meters' boundary indexes between the pipeline and the outbox.

    pipeline.values ─► Billing.observe ─► MeterIndex (per meter) ─► idx rows (lane above telemetry)
                                                                 ├► evt (index.decrease, ...)
                                                                 └► derived readings (rules)

Each boundary index is enqueued with, in the same SQLite transaction, the meter's state that says
it was produced (so a crash can neither lose it nor produce it twice) and its copy in the history
(`idx/{dev}/{boundary}` meta keys) that `meter.index` re-sends and `batigate meters export`
reads. The history is pruned after `billing.keep`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from agent.uplink import senml
from agent.billing.index import MeterIndex
from agent.billing.meters import MeterSpec, spec_of
from agent.config.loader import Config
from agent.sdk.config import DeviceConfig
from agent.uplink.ids import uuid7
from agent.sdk.models import PointValue, Reading
from agent.store.outbox import PRIO_EVENT, PRIO_INDEX, Outbox
from agent.runtime.timesync import PLAUSIBLE_AFTER

log = logging.getLogger(__name__)

STATE = "billing/"  # meta key prefix of each meter's state
HISTORY = "idx/"  # meta key prefix of the boundary indexes: idx/{dev}/{boundary:011d}
MAX_RESEND = 1000  # boundary indexes re-sent by one meter.index


def history_key(dev: str, instant: float) -> str:
    return f"{HISTORY}{dev}/{int(instant):011d}"


def strip_internal(record: Any) -> Any:
    """The published form: without the continuous count `cum` (it is the gateway's bookkeeping)."""
    if isinstance(record, dict):
        return {k: strip_internal(v) for k, v in record.items() if k not in ("cum", "mid")}
    return record


class Billing:
    def __init__(self, config: Config, outbox: Outbox, *, session: int,
                 clock: Callable[[], float], synced: Callable[[], bool] = lambda: True) -> None:
        self.outbox = outbox
        self.session = session
        self.clock = clock
        self.synced = synced
        self.indexes_made = 0
        self.unsynced_skipped = 0
        self.kept_existing = 0  # boundaries whose index was kept already: never made twice
        self.stored_other_unit = 0  # stored values not used: another unit than the index
        self.meters: dict[str, MeterIndex] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """(Again, after a live config apply): one MeterIndex per meter device, state kept."""
        self.gateway = config.gateway.id
        self.tz = ZoneInfo(config.billing.timezone)
        self.max_offset = config.billing.max_offset
        self.keep = config.billing.keep
        self.specs: dict[str, MeterSpec] = {}
        meters: dict[str, MeterIndex] = {}
        for device in config.devices:
            spec = spec_of(device)
            if spec is None:
                continue
            self.specs[device.id] = spec
            previous = self.meters.get(device.id)
            state = previous.state if previous is not None else self.outbox.get_meta(
                STATE + device.id)
            meters[device.id] = MeterIndex(spec, self.tz, self.max_offset, state)
        self.meters = meters

    # -- from the pipeline ----------------------------------------------------------------------

    def observe(self, device: DeviceConfig, values: list[PointValue], ts: float) -> list[Reading]:
        """One poll of `device`: publish what it completes; derived readings for the rules."""
        meter = self.meters.get(device.id)
        if meter is None:
            return []
        if not self.synced() or ts < PLAUSIBLE_AFTER:
            # A reading stamped by a clock that is not real (a Pi at 1970) would put boundaries
            # at the wrong instants: billing waits for the real time (the meter keeps counting).
            self.unsynced_skipped += 1
            return []
        outcome = meter.observe({v.name: v for v in values}, ts)
        key = STATE + device.id
        now = self.clock()
        self.stored_other_unit += outcome.other_unit
        for record, state in outcome.indexes:
            if self.outbox.get_meta(history_key(device.id, record["b"])) is not None:
                # Already kept (and sent under its mid): an index is never overwritten nor
                # made again under a new mid; the meter's state moves on all the same.
                self.kept_existing += 1
                log.warning("meter %s: the index of %s is kept already; not made again",
                            device.id, record["date"])
                self.outbox.stage_meta({key: state})
                continue
            body = self.body(meter.spec, record)
            mid = uuid7(now)
            self.outbox.enqueue(f"dev/{device.id}/idx", body, prio=PRIO_INDEX, sess=self.session,
                                ts=now, mid=mid, meta={key: state, history_key(
                                    device.id, record["b"]): {**body, "mid": mid,
                                                              "cum": record["cum"]}})
            self.indexes_made += 1
            self._prune(device.id, record["b"])
        for event in outcome.events:
            log.warning("meter %s: %s", device.id, event["type"])
            self.outbox.enqueue("evt", strip_internal(event), prio=PRIO_EVENT,
                                sess=self.session, ts=now, meta={key: outcome.state})
        self.outbox.stage_meta({key: outcome.state})
        return outcome.derived

    def body(self, spec: MeterSpec, record: dict[str, Any]) -> dict[str, Any]:
        """The `idx` message body (the envelope is the uplink's)."""
        body: dict[str, Any] = {"dev": spec.dev}
        if spec.dwelling:
            body["dwelling"] = spec.dwelling
        if spec.medium:
            body["medium"] = spec.medium
        sample: dict[str, Any] = {"bn": senml.base_name(self.gateway, spec.dev),
                                  "bt": record["b"], "n": spec.index}
        if record.get("u"):
            sample["u"] = record["u"]
        sample["v"] = record["v"]
        body.update({k: v for k, v in record.items() if k not in ("v", "u", "b")})
        body["e"] = [sample]
        return strip_internal(body)

    def _prune(self, dev: str, instant: float) -> None:
        old = self.outbox.meta_items(f"{HISTORY}{dev}/", history_key(dev, instant - self.keep))
        if old:
            self.outbox.stage_meta(dict.fromkeys((key for key, _ in old), None))

    # -- history --------------------------------------------------------------------------------

    def history(self, dev: str, first: float, last: float) -> list[dict[str, Any]]:
        """Stored boundary indexes of `dev` with first <= boundary <= last (with their mid)."""
        return [value for _, value in self.outbox.meta_items(
            history_key(dev, first), history_key(dev, last + 1), limit=MAX_RESEND)]

    def resend(self, dev: str, first: float, last: float) -> list[dict[str, Any]]:
        """meter.index: queue the stored indexes again, each under its first mid (a backend that
        has them already de-duplicates), flagged `resent`."""
        found = self.history(dev, first, last)
        now = self.clock()
        for stored in found:
            body = {**strip_internal(stored), "resent": True}
            self.outbox.enqueue(f"dev/{dev}/idx", body, prio=PRIO_INDEX, sess=self.session,
                                ts=now, mid=stored["mid"])
        return found
