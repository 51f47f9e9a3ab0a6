"""The `sparkplug` wire profile: what Sparkplug B 3.0 says, made from the outbox rows.

    spBv1.0/{group}/NBIRTH/{node}         each connection and rebirth: bdSeq, Node Control/Rebirth,
                                          Properties/*; seq 0
    spBv1.0/{group}/NDEATH/{node}         the Will of the Sparkplug connection: bdSeq only
    spBv1.0/{group}/DBIRTH/{node}/{dev}   every point of the device: name, alias, datatype, value
    spBv1.0/{group}/DDATA/{node}/{dev}    each telemetry row: alias, value, reading time in ms,
                                          is_historical for the rows an outage held back
    spBv1.0/{group}/DDEATH/{node}/{dev}   the device went down (or a config apply removed it)
    spBv1.0/{group}/NCMD/{node} (in)      Node Control/Rebirth = true -> NBIRTH + DBIRTHs again
    spBv1.0/{group}/DCMD/{node}/{dev} (in) point values -> point.write (only with `writes: true`)
    spBv1.0/STATE/{primary_host} (in)     with a primary host: publish only while it is online

This module is pure (no MQTT): agent/uplink/sparkplug.py owns the second connection whose Will
is the NDEATH, numbers the messages (seq) and publishes what this returns. A point's alias is its
position in the configuration (1, 2, …, across devices, stable until a config apply, which
rebirths); its datatype is Boolean for a bit/bool point, Double otherwise, String when a text
value arrives (the device is born again with the new type first, so a host never decodes a
value against a wrong type).
"""

from __future__ import annotations

import logging
from typing import Any

from agent import __version__
from agent.runtime.context import AgentContext
from agent.store.outbox import Message
from agent.wire.sparkplug_pb import BOOLEAN, DOUBLE, INT64, STRING, Metric

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
Out = tuple[str, str | None, list[Metric]]  # message type, device (or None), metrics


def _is_bool(point: Any) -> bool:  # the point's driver knows (Modbus: coils, type: bool, bits)
    return bool(point.is_boolean())


def _datatype(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, str):
        return STRING
    return DOUBLE


class Sparkplug:
    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent
        self.latest: dict[str, dict[str, Any]] = {}  # device -> point -> last live value
        self.types: dict[str, dict[str, int]] = {}  # device -> point -> datatype born with
        self.dead: set[str] = set()  # devices whose DDEATH was the last word
        self.born: set[str] = set()  # devices with a DBIRTH in this session
        self._aliases: tuple[Any, dict[tuple[str, str], int]] = (None, {})

    @property
    def group(self) -> str:
        return str(self.agent.config.mqtt.sparkplug.group)

    @property
    def node(self) -> str:
        return str(self.agent.config.mqtt.sparkplug.node or self.agent.config.gateway.id)

    def topic(self, kind: str, dev: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return f"{base}/{dev}" if dev else base

    def aliases(self) -> dict[tuple[str, str], int]:
        config = self.agent.config
        if self._aliases[0] is not config:  # computed once per configuration
            out: dict[tuple[str, str], int] = {}
            for device in config.devices:
                for point in device.points:
                    out[(device.id, point.name)] = len(out) + 1
            self._aliases = (config, out)
        return self._aliases[1]

    # -- births and deaths ----------------------------------------------------------------------

    def nbirth(self, bdseq: int, now_ms: int) -> list[Metric]:
        config = self.agent.config
        return [Metric("bdSeq", datatype=INT64, value=bdseq, timestamp=now_ms),
                Metric(REBIRTH, datatype=BOOLEAN, value=False, timestamp=now_ms),
                Metric("Properties/Agent Version", datatype=STRING, value=__version__,
                       timestamp=now_ms),
                Metric("Properties/Config Digest", datatype=STRING, value=str(config.digest),
                       timestamp=now_ms),
                Metric("Properties/Site", datatype=STRING, value=str(config.gateway.site or ""),
                       timestamp=now_ms)]

    @staticmethod
    def ndeath(bdseq: int) -> list[Metric]:
        return [Metric("bdSeq", datatype=INT64, value=bdseq)]

    def births(self, now_ms: int) -> list[Out]:
        """Every device's DBIRTH (a new session, a rebirth, a config apply), after a DDEATH for
        each device a config apply removed."""
        current = {d.id for d in self.agent.config.devices}
        gone = sorted(self.born - self.dead - current)
        removed: list[Out] = [("DDEATH", dev, []) for dev in gone]
        self.born.clear()
        self.dead.clear()
        for gone in set(self.latest) - current:
            self.latest.pop(gone, None)
            self.types.pop(gone, None)
        return removed + [self.dbirth(d.id, now_ms) for d in self.agent.config.devices]

    def dbirth(self, dev: str, now_ms: int) -> Out:
        device = next(d for d in self.agent.config.devices if d.id == dev)
        aliases = self.aliases()
        latest = self.latest.get(dev, {})
        types = self.types.setdefault(dev, {})
        metrics = []
        for point in device.points:
            value = latest.get(point.name)
            kind = types.get(point.name) or (
                _datatype(value) if value is not None else BOOLEAN if _is_bool(point) else DOUBLE)
            types[point.name] = kind
            metrics.append(Metric(point.name, alias=aliases[(dev, point.name)], datatype=kind,
                                  value=value, timestamp=now_ms))
        self.born.add(dev)
        self.dead.discard(dev)
        return ("DBIRTH", dev, metrics)

    # -- rows -----------------------------------------------------------------------------------

    def render(self, message: Message, body: dict[str, Any], hist: bool,
               now_ms: int) -> list[Out]:
        parts = message.topic.split("/")
        if parts[0] != "dev" or len(parts) != 3:
            return []
        dev = parts[1]
        known = any(d == dev for d, _ in self.aliases())
        if parts[2] == "state":
            if body.get("state") == "ok":
                return [self.dbirth(dev, now_ms)] if known and dev in self.dead else []
            if dev in self.born and dev not in self.dead:
                self.dead.add(dev)
                return [("DDEATH", dev, [])]
            return []
        if parts[2] != "tm" or not known:
            return []
        return self._data(dev, message, body, hist, now_ms)

    def _data(self, dev: str, message: Message, body: dict[str, Any], hist: bool,
              now_ms: int) -> list[Out]:
        aliases = self.aliases()
        types = self.types.setdefault(dev, {})
        latest = self.latest.setdefault(dev, {})
        metrics = []
        retype = False
        bt = message.ts
        for record in body.get("e") or []:
            bt = record.get("bt", bt)
            name = record.get("n")
            value = next((record[k] for k in ("v", "vb", "vs") if k in record), None)
            if not isinstance(name, str) or (dev, name) not in aliases:
                continue
            if value is not None and types.get(name) not in (None, _datatype(value)):
                retype = True
                types[name] = _datatype(value)
            if not hist and value is not None:
                latest[name] = value
            metrics.append(Metric(alias=aliases[(dev, name)], value=value, historical=hist,
                                  timestamp=round((bt + record.get("t", 0)) * 1000)))
        out: list[Out] = []
        if retype or dev not in self.born or dev in self.dead:
            out.append(self.dbirth(dev, now_ms))  # a type the host was not told, or a rebirth due
        if metrics:
            out.append(("DDATA", dev, metrics))
        return out

    # -- commands -------------------------------------------------------------------------------

    def writes(self, dev: str, metrics: list[Metric]) -> list[tuple[str, Any]]:
        """DCMD metrics (by name or alias) -> (point, value) of this device; ValueError names
        the first that is not one of its points."""
        by_alias = {alias: name for (d, name), alias in self.aliases().items() if d == dev}
        names = set(by_alias.values())
        out = []
        for metric in metrics:
            name = metric.name if metric.name is not None else by_alias.get(metric.alias or -1)
            if name not in names:
                raise ValueError(f"{metric.name or metric.alias!r} is not a point of {dev}")
            if metric.value is None:
                raise ValueError(f"{name}: no value")
            out.append((name, metric.value))
        return out
