"""The `homeassistant` wire profile: Home Assistant MQTT device discovery.

    {prefix}/device/{gw}/config          retained: the gateway device (connectivity, one problem
                                         binary sensor per alarm rule)
    {prefix}/device/{gw}-{dev}/config    retained: one per field device, a component per point
    {prefix}/{component}/{node}/{key}/config   instead, with `discovery: entity`: one classic
                                         config per entity (node = {gw} or {gw}-{dev}), for Home
                                         Assistant before 2024.11, which knows no device configs
    {root}/ha/{dev}                      retained: {"ts", "seq", "hist", "v": {point: value}}
    {root}/ha/{dev}/hist                 what an outage held back, in order (hist: true)
    {root}/ha/{dev}/availability         retained: online | offline (the device's comm state)
    {root}/ha/_alarms                     retained: {rule id: "ON" | "OFF"}
    {root}/ha/{dev}/{point}/set          in, with `writes: true`: number or switch -> point.write

Availability of every field entity is the gateway's own `{root}/state` (its Last Will says
offline when the agent dies) AND the device's availability topic (`availability_mode: all`).
Values keep SenML units except where Home Assistant's dashboards need its own (energy in kWh,
flow in m³/h: converted in the value template, the payload stays SenML). Meters get
`state_class: total_increasing` with the device class the energy and water dashboards accept.
Readings held back by an outage arrive in order on `ha/{dev}/hist`, not on the state topic:
Home Assistant has no way to back-date a state, and the backlog drains while live readings flow.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from agent import __version__
from agent.runtime.context import AgentContext
from agent.store.outbox import Message
from agent.wire import Publication

log = logging.getLogger(__name__)

MAX_SET_PAYLOAD = 64  # "ON", "OFF" or a number: anything longer is not from Home Assistant
ONLINE = "{{ 'online' if value_json.online else 'offline' }}"

# SenML unit -> (Home Assistant unit, device class, factor applied in the value template)
UNITS: dict[str, tuple[str | None, str | None, float]] = {
    "Pa": ("Pa", "pressure", 1.0),
    "Cel": ("°C", "temperature", 1.0),
    "K": ("K", "temperature", 1.0),
    "W": ("W", "power", 1.0),
    "J": ("kWh", "energy", 1 / 3.6e6),
    "m3": ("m³", "water", 1.0),
    "m3/s": ("m³/h", "volume_flow_rate", 3600.0),
    "%RH": ("%", "humidity", 1.0),
    "%": ("%", None, 1.0),
    "V": ("V", "voltage", 1.0),
    "A": ("A", "current", 1.0),
    "Hz": ("Hz", "frequency", 1.0),
    "s": ("s", "duration", 1.0),
    "m": ("m", "distance", 1.0),
    "kg": ("kg", "weight", 1.0),
    "lx": ("lx", "illuminance", 1.0),
    "dB": ("dB", "sound_pressure", 1.0),
    "ppm": ("ppm", None, 1.0),
    "1/min": ("rpm", None, 1.0),
    "count": (None, None, 1.0),
}
COUNTING = {"energy", "water", "gas"}  # the classes the energy dashboard sums


def _senml_unit(unit: str | None) -> str | None:
    from agent.sdk import units  # noqa: PLC0415

    return units.normalize(unit)[0]


def sensor_options(point: Any) -> dict[str, Any]:
    """unit_of_measurement, device_class, state_class and the value template of a numeric
    point, from its SenML unit and its kind (a `counter` only ever grows)."""
    unit = _senml_unit(point.unit)
    ha_unit, device_class, factor = UNITS.get(unit or "", (unit, None, 1.0))
    tags = " ".join([point.brick or "", *(point.haystack or [])]).lower()
    if unit == "m3" and "gas" in tags:
        device_class = "gas"
    counter = point.kind == "counter" or unit == "count" and point.kind != "sensor"
    if device_class in COUNTING:
        state_class = "total_increasing" if counter or point.kind is None else "total"
    else:
        state_class = "total_increasing" if counter else "measurement"
    value = f"value_json.v.{point.name}"
    template = (f"{{{{ {value} }}}}" if factor == 1.0 else
                f"{{{{ none if {value} is none else ({value} * {factor!r}) | round(6) }}}}")
    out: dict[str, Any] = {"value_template": template, "state_class": state_class}
    if ha_unit is not None:
        out["unit_of_measurement"] = ha_unit
    if device_class is not None:
        out["device_class"] = device_class
    return out


def _is_bool(point: Any) -> bool:
    return bool(point.is_boolean())  # the point's driver knows (Modbus: coils, type: bool, bits)


def component(gw: str, dev: str, point: Any, root: str, writes: bool) -> dict[str, Any]:
    """One entry of the device's `cmps`."""
    name = point.description or point.name.replace("_", " ")
    # No object_id: Home Assistant derives the entity id from the device and entity names
    # (object_id in discovery is deprecated there).
    base = {"unique_id": f"bgw_{gw}_{dev}_{point.name}", "name": name}
    value = f"value_json.v.{point.name}"
    set_topic = f"{root}/ha/{dev}/{point.name}/set"
    if _is_bool(point):
        state = f"{{{{ none if {value} is none else ('ON' if {value} else 'OFF') }}}}"
        if point.writable and writes:
            return {**base, "p": "switch", "value_template": state, "command_topic": set_topic}
        out = {**base, "p": "binary_sensor", "value_template": state}
        if point.kind == "alarm" or "fault" in point.name or "alarm" in point.name:
            out["device_class"] = "problem"
        elif "running" in point.name:
            out["device_class"] = "running"
        return out
    options = sensor_options(point)
    if point.writable and writes:
        scale = getattr(point, "scale", None)
        return {**base, "p": "number", "command_topic": set_topic, "mode": "box",
                "min": point.min if point.min is not None else -1e9,
                "max": point.max if point.max is not None else 1e9,
                "step": scale if isinstance(scale, int | float) and scale > 0 else 1,
                "value_template": f"{{{{ {value} }}}}",
                **{k: v for k, v in options.items() if k in ("unit_of_measurement",
                                                              "device_class")}}
    return {**base, "p": "sensor", **options}


class HomeAssistant:
    def __init__(self, agent: AgentContext, wire: Any) -> None:
        self.agent = agent
        self.wire = wire
        self.announced: set[str] = set()  # device discovery topics published, to clear removed
        self.latest: dict[str, dict[str, Any]] = {}  # device -> point -> last value sent

    # -- what the config says ------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        return self.agent.config.mqtt.homeassistant

    @property
    def gw(self) -> str:
        return str(self.agent.config.gateway.id)

    @property
    def root(self) -> str:
        return str(self.agent.config.root)

    def _topic(self, object_id: str) -> str:
        return f"{self.settings.discovery_prefix}/device/{object_id}/config"

    def _origin(self) -> dict[str, Any]:
        return {"name": "batigate", "sw": __version__}

    def gateway_config(self) -> dict[str, Any]:
        gw, root = self.gw, self.root
        cmps: dict[str, Any] = {"online": {
            "p": "binary_sensor", "unique_id": f"bgw_{gw}_online", "name": "online",
            "device_class": "connectivity",
            "state_topic": f"{root}/state",
            "value_template": "{{ 'ON' if value_json.online else 'OFF' }}"}}
        for rule in self.agent.config.rules:
            key = f"alarm_{rule.id.replace('-', '_')}"
            cmps[key] = {"p": "binary_sensor", "unique_id": f"bgw_{gw}_{key}",
                         "name": f"alarm {rule.id}",
                         "device_class": "problem", "state_topic": f"{root}/ha/_alarms",
                         "value_template": f"{{{{ value_json['{rule.id}'] | default('OFF') }}}}",
                         "availability": [{"topic": f"{root}/state", "value_template": ONLINE}]}
        return {"dev": {"ids": [f"bgw_{gw}"], "name": f"batigate {gw}", "mf": "batigate",
                        "mdl": "building gateway", "sw": __version__,
                        "sa": str(self.agent.config.gateway.site)},
                "o": self._origin(), "cmps": cmps, "qos": 1}

    def device_config(self, device: Any) -> dict[str, Any]:
        gw, root, dev = self.gw, self.root, device.id
        writes = self.settings.writes
        return {
            "dev": {"ids": [f"bgw_{gw}_{dev}"], "name": f"{dev} ({gw})", "mf": "batigate",
                    "mdl": device.profile or "field device", "via_device": f"bgw_{gw}",
                    "sa": str(self.agent.config.gateway.site)},
            "o": self._origin(),
            "cmps": {p.name: component(gw, dev, p, root, writes) for p in device.points},
            "state_topic": f"{root}/ha/{dev}",
            "json_attributes_topic": f"{root}/ha/{dev}",
            "json_attributes_template":
                "{{ {'ts': value_json.ts, 'seq': value_json.seq, 'hist': value_json.hist}"
                " | tojson }}",
            "availability": [{"topic": f"{root}/state", "value_template": ONLINE},
                             {"topic": f"{root}/ha/{dev}/availability"}],
            "availability_mode": "all", "qos": 1,
        }

    # -- the profile ---------------------------------------------------------------------------

    def configs(self) -> list[tuple[str, dict[str, Any]]]:
        """(discovery topic, config) of the gateway and of every field device, in the form
        `discovery` asks for."""
        nodes = [(self.gw, self.gateway_config())]
        nodes += [(f"{self.gw}-{d.id}", self.device_config(d)) for d in self.agent.config.devices]
        if self.settings.discovery == "device":
            return [(self._topic(node), config) for node, config in nodes]
        prefix = self.settings.discovery_prefix
        return [(f"{prefix}/{entity['p']}/{node}/{key}/config", _entity_config(config, entity))
                for node, config in nodes for key, entity in config["cmps"].items()]

    def announce(self) -> list[Publication]:
        """Every discovery config (retained), and an empty retained message for the devices (or
        entities) a config apply removed, which Home Assistant takes as 'delete'."""
        out = [(topic, _json(config), True) for topic, config in self.configs()]
        current = {topic for topic, _, _ in out}
        out.extend((topic, b"", True) for topic in sorted(self.announced - current))
        self.announced = current
        return out

    def render(self, message: Message, body: dict[str, Any], hist: bool) -> list[Publication]:
        parts = message.topic.split("/")
        if parts[0] == "dev" and len(parts) == 3 and parts[2] == "tm":
            return [self._telemetry(parts[1], message, body, hist)]
        if parts[0] == "dev" and len(parts) == 3 and parts[2] == "state":
            state = body.get("state")
            return [(f"{self.root}/ha/{parts[1]}/availability",
                     b"online" if state == "ok" else b"offline", True)]
        if message.topic == "alarms":
            active = {a.get("rule") for a in body.get("active") or []
                      if isinstance(a, dict)}
            states = {r.id: "ON" if r.id in active else "OFF" for r in self.agent.config.rules}
            return [(f"{self.root}/ha/_alarms", _json(states), True)]
        return []

    def _telemetry(self, dev: str, message: Message, body: dict[str, Any],
                   hist: bool) -> Publication:
        """Live: the device's state topic (every point's latest value). Held back by an outage:
        its own topic, in order, not retained. The backlog drains while live telemetry flows
        (agent/uplink/pacing.py), and Home Assistant cannot back-date a state: a replayed reading on
        the state topic would overwrite a newer one."""
        values: dict[str, Any] = {}
        bt = None
        for record in body.get("e") or []:
            bt = record.get("bt", bt)
            name = record.get("n")
            if isinstance(name, str):
                values[name] = next((record[k] for k in ("v", "vb", "vs") if k in record), None)
        if not hist:
            values = self.latest.setdefault(dev, {}) | values
            self.latest[dev] = values
        state = {"ts": bt if bt is not None else message.ts, "seq": message.seq, "hist": hist,
                 "v": values}
        if hist:
            return (f"{self.root}/ha/{dev}/hist", _json(state), False)
        return (f"{self.root}/ha/{dev}", _json(state), True)

    def subscriptions(self) -> list[str]:
        return [f"{self.root}/ha/+/+/set"] if self.settings.writes else []

    async def on_message(self, topic: str, payload: bytes) -> list[Publication]:
        """A set topic: the same point.write as a command (writable, limits, audit, event), run
        as the local caller `homeassistant`. Anything malformed is counted and dropped."""
        from agent.runtime import control  # noqa: PLC0415

        parts = topic.split("/")
        value = parse_set(payload)
        if value is None or len(parts) < 4:
            self.wire.dropped += 1
            log.warning("homeassistant: ignored %r on %s", payload[:MAX_SET_PAYLOAD], topic)
            return []
        dev, point = parts[-3], parts[-2]
        answer = await control.dispatch(self.agent, "point.write",
                                        {"dev": dev, "n": point, "v": value}, "homeassistant")
        if answer.get("status") != "succeeded":
            self.wire.dropped += 1
            log.warning("homeassistant: write %s/%s=%r refused: %s", dev, point, value,
                        answer.get("error"))
        return []  # Home Assistant reads the outcome from the state topic


def _entity_config(device_config: dict[str, Any], component: dict[str, Any]) -> dict[str, Any]:
    """A classic per-entity config from one component of a device config: the options the
    device config shares with its components, then the component's own (which win, as in
    device discovery), with the device and origin repeated in each."""
    shared = {k: v for k, v in device_config.items() if k not in ("dev", "o", "cmps")}
    own = {k: v for k, v in component.items() if k != "p"}
    return {**shared, **own, "dev": device_config["dev"], "o": device_config["o"]}


def parse_set(payload: bytes) -> bool | int | float | None:
    """ON/OFF (a switch) or a finite number (a number entity); None for anything else."""
    if len(payload) > MAX_SET_PAYLOAD:
        return None
    text = payload.decode("ascii", "replace").strip()
    if text in ("ON", "OFF"):
        return text == "ON"
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and "." not in text else number


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
