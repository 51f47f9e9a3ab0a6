"""One meter's boundary indexes: from its readings to an index at every local midnight.

Pure and synchronous: `MeterIndex.observe(values, ts)` takes one poll's point values and returns
what to publish (boundary indexes, each with the state to store in the same transaction, integrity
events, derived readings). The caller persists `state` (a JSON-able dict) and gives it back after a
restart.

For each boundary b between the previous accepted reading and this one, in this order:
    meter   the meter's stored value dated b's local date (M-Bus storage number + date record),
            if it lies between the two readings;
    reading the reading closest to b, when it is at most `max_offset` away (its offset in s);
    interpolated  linear between the two readings, rounded to the meter's resolution, flagged,
            with both readings.
Counts are kept as the meter sent them (Decimal digits x decimal scale, in the meter's unit); the
SenML value is derived from them, so no float rounding reaches a bill. `cum` is the count made
continuous across declared rollovers and meter replacements: consumption is a difference of cums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from agent.sdk import units
from agent.billing import boundaries
from agent.billing import stored as stored_values
from agent.billing.obs import Obs
from agent.billing.meters import FLOW_POINTS, HOUR_FLOW, ID_POINTS, MeterSpec
from agent.billing.stored import Stored, digits_of as _digits, number as _number
from agent.sdk.models import PointValue, Quality, Reading

HOUR = 3600
HOUR_GAP = 2 * HOUR  # hourly flows only between readings at most this far apart (evidence)
CLOCK_DRIFT = 86400.0  # a meter clock further off than this makes its dates untrustworthy
NEAR_ZERO = Decimal("0.01")  # a new index below 1 % of the last one: a new meter counting from 0


@dataclass
class Outcome:
    indexes: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    derived: list[Reading] = field(default_factory=list)
    other_unit: int = 0  # stored values not used: another unit or scale than the index
    state: dict[str, Any] = field(default_factory=dict)  # after everything above


class MeterIndex:
    def __init__(self, spec: MeterSpec, tz: ZoneInfo, max_offset: float,
                 state: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.tz = tz
        self.max_offset = max_offset
        self.state: dict[str, Any] = dict(state or {})
        self.state.setdefault("flags", {})
        self.senml_unit, self.factor, _ = units.normalize(spec.unit) if spec.unit else (
            None, 1.0, 0.0)

    # -- one poll -------------------------------------------------------------------------------

    def observe(self, values: dict[str, PointValue], ts: float) -> Outcome:
        out = Outcome()
        self._check_flow(values, out)
        self._check_clock(values, ts, out)
        pv = values.get(self.spec.index)
        if pv is None or pv.quality is Quality.BAD or not _number(pv.value):
            out.state = self.state
            return out
        obs = self._obs(pv, values, ts)
        last = Obs.from_dict(self.state["last"]) if "last" in self.state else None
        if last is None:
            self.state["unit"] = self._senml_unit(pv)
            self._backfill(obs, values, out)
            self.state["last"] = obs.as_dict()
            out.state = self.state
            return out
        if ts <= last.t:
            out.state = self.state
            return out  # an old or repeated sample: boundaries only move forward
        obs = self._continue(last, obs, out)
        if obs is None:  # a decrease: never billed
            out.state = self.state
            return out
        self.state["flags"].pop("decrease", None)
        self._boundaries(last, obs, values, out)
        self._hours(last, obs, out)
        self.state["last"] = obs.as_dict()
        out.state = self.state
        return out

    def _senml_unit(self, pv: PointValue) -> str | None:
        if pv.raw is not None:
            return units.normalize(pv.raw[2])[0]
        return self.senml_unit or pv.unit

    def _obs(self, pv: PointValue, values: dict[str, PointValue], ts: float) -> Obs:
        if pv.raw is not None:
            digits, scale, unit = pv.raw
        else:
            digits, scale, unit = _digits(pv.value), "1", self.spec.unit or pv.unit
        meter = None
        for name in ID_POINTS:
            found = values.get(name)
            if found is not None and found.quality is not Quality.BAD and found.value is not None:
                meter = str(found.value)
                break
        return Obs(ts, digits, scale, unit, meter or self.spec.meter_ref, Decimal(digits))

    # -- integrity --------------------------------------------------------------------------------

    def _continue(self, last: Obs, obs: Obs, out: Outcome) -> Obs | None:
        """`obs` with its continuous count, or None when it goes down and is not billed."""
        flags = self.state["flags"]
        offset = Decimal(self.state.get("offset", "0"))
        wraps = int(self.state.get("wraps", 0))
        modulus = self.spec.rollover
        new_meter = obs.meter is not None and last.meter is not None and obs.meter != last.meter
        count = obs.count
        if not new_meter and count < last.count:
            if modulus and last.count >= Decimal(modulus) * Decimal("0.9") and \
                    count < Decimal(modulus) * Decimal("0.1"):
                wraps += 1
                self.state["wraps"] = wraps
                out.events.append(self._event("index.rollover", last=last, now=obs))
            elif count <= last.count * NEAR_ZERO:
                new_meter = True
            else:
                if not flags.get("decrease"):
                    flags["decrease"] = True
                    out.events.append(self._event("index.decrease", last=last, now=obs))
                return None
        if new_meter:
            out.events.append({**self._event("meter.replaced"),
                               "reason": "new meter id" if obs.meter != last.meter and
                               obs.meter is not None and last.meter is not None
                               else "index restarted near zero",
                               "old": {"meter": last.meter, "last": self._public(last)},
                               "new": {"meter": obs.meter, "first": self._public(obs)}})
            # The new meter continues the old one's count: consumption between the two readings
            # (removal and fitting) is unknown, so it counts as none.
            offset = last.cum - count
            wraps = 0
            self.state.update(offset=str(offset), wraps=0, replaced_at=round(obs.t, 3))
        cum = count + wraps * Decimal(modulus or 0) + offset
        return Obs(obs.t, obs.digits, obs.scale, obs.unit, obs.meter, cum)

    def _check_flow(self, values: dict[str, PointValue], out: Outcome) -> None:
        flags = self.state["flags"]
        for name in FLOW_POINTS:
            pv = values.get(name)
            if pv is None or not _number(pv.value) or pv.quality is Quality.BAD:
                continue
            reverse = float(pv.value) < 0  # type: ignore[arg-type]
            if reverse and not flags.get("reverse"):
                out.events.append({**self._event("meter.reverse_flow"), "flow": pv.value,
                                   "point": name})
            flags["reverse"] = reverse
            return

    def _check_clock(self, values: dict[str, PointValue], ts: float, out: Outcome) -> None:
        pv = values.get("date_time")
        if pv is None:
            return
        problem, kind = None, None
        meter_time = _local(pv.value, self.tz) if pv.quality is not Quality.BAD else None
        if meter_time is None:
            problem, kind = "the meter's date and time is invalid (not set, or flagged " \
                "invalid)", "invalid"
        elif abs(meter_time - ts) > CLOCK_DRIFT:
            problem = f"the meter's clock is {round(meter_time - ts)} s off the gateway's"
            kind = "drift"
        self._date_problem("date_time", problem, out, kind)

    def _date_problem(self, point: str, problem: str | None, out: Outcome,
                      kind: str | None = None) -> None:
        """Report a date problem once per episode (a drift that grows is the same episode)."""
        flags = self.state["flags"]
        key = f"date:{point}"
        kind = kind or problem
        if problem and flags.get(key) != kind:
            out.events.append({**self._event("meter.date_invalid"), "point": point,
                               "reason": problem})
        if problem:
            flags[key] = kind
        else:
            flags.pop(key, None)

    # -- boundaries -------------------------------------------------------------------------------

    def _boundaries(self, last: Obs, obs: Obs, values: dict[str, PointValue],
                    out: Outcome) -> None:
        done = float(self.state.get("done", 0.0))
        anchors = self._anchors(last, obs, self._stored(values, obs, out))
        for instant, day in boundaries.between(max(last.t, done), obs.t, self.tz):
            record = self._at(instant, day, last, obs, anchors)
            self._consumption(record, day, Decimal(record["cum"]))
            self.state["done"] = instant
            out.indexes.append((record, _copy(self.state)))

    def _backfill(self, first: Obs, values: dict[str, PointValue], out: Outcome) -> None:
        """First sight of the meter (a new gateway, a meter just configured): the boundaries the
        meter kept a dated value for, before this first reading, from those values (src meter).
        A value above a later one or above this reading is not this meter's count: not used.
        The state given with each index has no `last` until the end, so a crash half-way
        backfills again at the next start, and the boundaries already kept are not made twice
        (`done`, and the service's check of its history)."""
        done = float(self.state.get("done", 0.0))
        stored = sorted((s for s in self._stored(values, first, out).values()
                         if done < s.instant < first.t), key=lambda s: s.instant)
        ceiling, kept = first.count, []
        for value in reversed(stored):
            if value.count <= ceiling:
                kept.append(value)
                ceiling = value.count
        for value in reversed(kept):
            day = date.fromisoformat(value.day)
            obs = Obs(value.instant, value.digits, value.scale, value.unit, first.meter,
                      value.count)
            record = {**self._base(value.instant, day), **self._meter_src(obs, value)}
            self._consumption(record, day, value.count)
            self.state["done"] = value.instant
            out.indexes.append((record, _copy(self.state)))

    def _stored(self, values: dict[str, PointValue], obs: Obs,
                out: Outcome) -> dict[str, Stored]:
        """The meter's stored values by the local date they are the index of; what cannot be
        used is reported (once per episode), never skipped silently."""
        found = stored_values.collect(self.spec, values, self.tz, self.max_offset,
                                      (obs.scale, obs.unit))
        for point, problem in found.bad_dates:
            self._date_problem(point, problem, out)
        flags = self.state["flags"]
        other = {item["point"] for item in found.other_unit}
        for item in found.other_unit:
            out.other_unit += 1
            if not flags.get(f"unit:{item['point']}"):
                out.events.append({**self._event("meter.stored_unit"), **item})
            flags[f"unit:{item['point']}"] = True
        for key in [k for k in flags if k.startswith("unit:") and k[5:] not in other]:
            flags.pop(key)
        return found.values

    def _base(self, instant: float, day: date) -> dict[str, Any]:
        return {"date": day.isoformat(), "b": instant, "at": boundaries.iso(instant, self.tz),
                "month": boundaries.is_month_start(day)}

    def _meter_src(self, value: Obs, keep: Stored) -> dict[str, Any]:
        record = {**self._public(value, with_time=False), "src": "meter",
                  "meter_date": keep.meter_date}
        if keep.meter_time is not None:
            record.update(meter_time=keep.meter_time, offset=round(keep.offset, 3))
        return record

    def _anchors(self, last: Obs, obs: Obs,
                  stored: dict[str, Stored]) -> dict[str, tuple[Obs, Stored]]:
        """The stored values that lie between the two readings of this meter, by boundary date,
        each with its place in this meter's continuous count (same rollovers and offset); one
        that would make the count go down is not this meter's count and is left out."""
        found: dict[str, tuple[Obs, Stored]] = {}
        if obs.meter != last.meter:
            return found
        floor = last.cum
        for keep in sorted(stored.values(), key=lambda k: k.instant):
            cum = keep.count + obs.cum - obs.count
            at = keep.instant + keep.offset  # the meter's own instant
            if last.t < at <= obs.t and floor <= cum <= obs.cum:
                found[keep.day] = (Obs(at, keep.digits, keep.scale, keep.unit, obs.meter, cum),
                                   keep)
                floor = cum
        return found

    def _at(self, instant: float, day: date, last: Obs, obs: Obs,
            anchors: dict[str, tuple[Obs, Stored]]) -> dict[str, Any]:
        base = self._base(instant, day)
        if day.isoformat() in anchors:
            value, keep = anchors[day.isoformat()]
            return {**base, **self._meter_src(value, keep)}
        before, after = instant - last.t, obs.t - instant
        replaced = obs.meter != last.meter or "replaced_at" in self.state and \
            float(self.state["replaced_at"]) == round(obs.t, 3)
        if min(before, after) <= self.max_offset or replaced:
            near = last if before <= after or replaced else obs
            return {**base, **self._public(near, with_time=False), "src": "reading",
                    "offset": round(near.t - instant, 3)}
        # Between the nearest known counts: the readings, or the meter's own stored values when
        # some lie between them (a gateway off for weeks), so the line never crosses them.
        known = [a for a, _ in anchors.values()]
        low = max((a for a in known if a.t < instant), key=lambda a: a.t, default=last)
        high = min((a for a in known if a.t > instant), key=lambda a: a.t, default=obs)
        fraction = Decimal(repr((instant - low.t) / (high.t - low.t)))
        exponent = min(Decimal(low.digits).as_tuple().exponent,
                       Decimal(high.digits).as_tuple().exponent)  # the meter's resolution
        cum = (low.cum + (high.cum - low.cum) * fraction).quantize(
            Decimal(1).scaleb(int(exponent)))
        digits = cum - (obs.cum - obs.count)
        if digits < 0 and self.spec.rollover:
            digits += self.spec.rollover
        value = Obs(instant, f"{digits:f}", obs.scale, obs.unit, obs.meter, cum)
        return {**base, **self._public(value, with_time=False), "src": "interpolated",
                "before": self._bound(low, last, obs), "after": self._bound(high, last, obs)}

    def _bound(self, point: Obs, last: Obs, obs: Obs) -> dict[str, Any]:
        """An end of an interpolation: a reading, or a stored value of the meter (`src`)."""
        public = self._public(point)
        return public if point is last or point is obs else {**public, "src": "meter"}

    def _consumption(self, record: dict[str, Any], day: date, cum: Decimal) -> None:
        """Day (and month) consumption ending at this boundary, when the start is known."""
        totals: dict[str, Any] = {}
        refs = [("day", boundaries.previous_day(day))]
        if boundaries.is_month_start(day):
            refs.append(("month", boundaries.previous_month(day)))
        for kind, start in refs:
            ref = self.state.get(f"{kind}_ref")
            if ref and ref["date"] == start.isoformat():
                count = cum - Decimal(ref["cum"])
                totals[kind] = {"from": start.isoformat(), **self._amount(count, record)}
            self.state[f"{kind}_ref"] = {"date": day.isoformat(), "cum": str(cum)}
        if totals:
            record["consumption"] = totals

    def _amount(self, count: Decimal, record: dict[str, Any]) -> dict[str, Any]:
        scale = Decimal(record["raw"]["scale"])
        ratio = Decimal(repr(self.spec.ratio(record["raw"]["unit"])))
        return {"v": _float(count * scale * ratio), "u": record["u"],
                "x": f"{count * scale:f}", "xu": record["raw"]["unit"]}

    # -- hourly flows for the leak rules ------------------------------------------------------

    def _hours(self, last: Obs, obs: Obs, out: Outcome) -> None:
        if self.spec.index != "volume" or obs.t - last.t > HOUR_GAP:
            self.state.pop("hour", None)
            return
        anchor = self.state.get("hour")
        ratio = Decimal(obs.scale) * Decimal(repr(self.spec.ratio(obs.unit)))
        hour = (int(last.t) // HOUR + 1) * HOUR
        while hour <= obs.t:
            fraction = Decimal(repr((hour - last.t) / (obs.t - last.t)))
            cum = last.cum + (obs.cum - last.cum) * fraction
            if anchor is not None and anchor["t"] == hour - HOUR:
                flow = (cum - Decimal(anchor["cum"])) * ratio / HOUR
                out.derived.append(Reading(self.spec.dev, HOUR_FLOW, _float(flow), "m3/s",
                                           float(hour)))
            anchor = {"t": hour, "cum": str(cum)}
            hour += HOUR
        if anchor is not None:
            self.state["hour"] = anchor

    # -- shapes ---------------------------------------------------------------------------------

    def _public(self, obs: Obs, *, with_time: bool = True) -> dict[str, Any]:
        """An index as published: SenML value and unit, the meter's digits and unit, exact."""
        ratio = Decimal(repr(self.spec.ratio(obs.unit)))
        out: dict[str, Any] = {
            "v": _float(obs.count * Decimal(obs.scale) * ratio),
            "u": units.normalize(obs.unit)[0] if obs.unit else self.state.get("unit"),
            "raw": {"digits": obs.digits, "scale": obs.scale, "unit": obs.unit},
            "x": obs.exact(), "meter": obs.meter, "cum": str(obs.cum)}
        if with_time:
            out["t"] = round(obs.t, 3)
        return out

    def _event(self, kind: str, **obs: Obs) -> dict[str, Any]:
        event: dict[str, Any] = {"type": kind, "dev": self.spec.dev}
        if self.spec.dwelling:
            event["dwelling"] = self.spec.dwelling
        for name, value in obs.items():
            event[name] = self._public(value)
        return event


def _float(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def _local(value: Any, tz: ZoneInfo) -> float | None:
    """An M-Bus local date-time (no zone, the meter's legal time) as an instant."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=tz).timestamp()
    except ValueError:
        return None


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
