"""Load and check the gateway config file; every problem comes back as `FILE:LINE: path: what`.

Validation has two phases because drivers and rule types arrive through entry points: phase one
checks the core sections and reads the routing keys (`driver`, `bus`, `type`); phase two hands each
bus, device and rule to the model of its driver or rule type. Cross-references come last.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from agent.sdk import registry
from agent.commands.models import CommandsConfig
from agent.config.models import (BillingConfig, BufferConfig, ControlConfig, GatewayConfig,
                                 HealthConfig, MqttConfig, UpdateConfig)
from agent.sdk.config import BusConfig, DeviceConfig, PointConfig, RuleConfig, Strict
from agent.sdk.errors import ConfigError
from agent.i18n import t
from agent.local.config import LocalConfig
from agent.config.yamlsource import Path_, dotted, line_of, load_with_lines


class FileModel(Strict):
    gateway: GatewayConfig
    mqtt: MqttConfig
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    buses: list[dict[str, Any]] = Field(default_factory=list)
    devices: list[dict[str, Any]] = Field(default_factory=list)
    rules: list[dict[str, Any]] = Field(default_factory=list)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)


@dataclass(frozen=True)
class Config:
    source: Path
    digest: str  # sha256 of the file, first 16 hex digits: in `birth`, to spot config drift
    gateway: GatewayConfig
    mqtt: MqttConfig
    buffer: BufferConfig
    health: HealthConfig
    log_level: str
    buses: list[BusConfig] = field(default_factory=list)
    devices: list[DeviceConfig] = field(default_factory=list)
    rules: list[RuleConfig] = field(default_factory=list)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    local: LocalConfig = field(default_factory=LocalConfig)

    @property
    def root(self) -> str:
        """Topic root `{namespace}/{site}/{gateway}`."""
        return f"{self.mqtt.namespace}/{self.gateway.site}/{self.gateway.id}"

    def bus(self, bus_id: str) -> BusConfig:
        return next(b for b in self.buses if b.id == bus_id)

    def device(self, device_id: str) -> DeviceConfig:
        return next(d for d in self.devices if d.id == device_id)

    def point(self, ref: str) -> tuple[DeviceConfig, PointConfig] | None:
        """Resolve `dev/point`; None when it names nothing."""
        dev_id, _, name = ref.partition("/")
        for device in self.devices:
            if device.id == dev_id:
                for point in device.points:
                    if point.name == name:
                        return device, point
        return None


class _Problems:
    def __init__(self, source: str, lines: dict[Path_, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[tuple[int, str]] = []

    def add(self, path: Path_, message: str) -> None:
        line = line_of(self.lines, path)
        self.items.append((line, f"{self.source}:{line}: {dotted(path)}: {message}"))

    def add_validation(self, error: ValidationError, prefix: Path_ = ()) -> None:
        for item in error.errors():
            path = (*prefix, *item["loc"])
            self.add(path, _message(item))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError([text for _, text in sorted(self.items, key=lambda it: it[0])])


# pydantic's commonest complaints, in the technician's language (by error type; its context
# gives the placeholders). Our own validators raise messages that are translated already.
PYDANTIC_MESSAGES = {
    "extra_forbidden": "config.unknown_key", "missing": "config.missing",
    "int_type": "config.not_int", "int_parsing": "config.not_int",
    "int_from_float": "config.not_int", "float_type": "config.not_number",
    "float_parsing": "config.not_number", "bool_type": "config.not_bool",
    "bool_parsing": "config.not_bool", "string_type": "config.not_text",
    "list_type": "config.not_list", "dict_type": "config.not_mapping",
    "model_type": "config.not_mapping", "greater_than": "config.greater_than",
    "greater_than_equal": "config.greater_than_equal", "less_than": "config.less_than",
    "less_than_equal": "config.less_than_equal", "literal_error": "config.one_of",
    "enum": "config.one_of",
}


def _message(item: Any) -> str:
    kind = item["type"]
    message = str(item["msg"])
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if kind == "string_pattern_mismatch" and "a-z0-9" in message:
        return t("config.bad_id")
    if kind in PYDANTIC_MESSAGES:
        ctx = item.get("ctx") or {}
        limit = next((ctx[k] for k in ("gt", "ge", "lt", "le") if k in ctx), "")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # a limit of 30 s is shown 30, as pydantic does
        expected = str(ctx.get("expected", "")).replace(" or ", t("config.or"))
        return t(PYDANTIC_MESSAGES[kind], limit=limit, expected=expected)
    return message


def load(path: str | Path) -> Config:
    """Read, validate and cross-check `path`; raise ConfigError listing every problem."""
    source = Path(path)
    try:
        raw_bytes = source.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    return parse(raw_bytes.decode("utf-8", errors="replace"), str(source))


def parse(text: str, source: str = "<config>") -> Config:
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{source}:{line}: (yaml): {what}"]) from None
    problems = _Problems(source, lines)
    if not isinstance(data, dict):
        problems.add((), t("config.not_a_mapping"))
        problems.raise_if_any()
    try:
        top = FileModel.model_validate(data)
    except ValidationError as exc:
        problems.add_validation(exc)
        problems.raise_if_any()
        raise AssertionError("unreachable") from None

    buses = _buses(top.buses, problems)
    devices, profile_rules = _devices(top.devices, buses, problems)
    own_rules: list[tuple[Path_, dict[str, Any]]] = [
        (("rules", index), item) for index, item in enumerate(top.rules)]
    rules = _rules(own_rules + profile_rules, problems)
    _cross_check(devices, rules, problems)
    problems.raise_if_any()
    return Config(source=Path(source), digest=hashlib.sha256(text.encode()).hexdigest()[:16],
                  gateway=top.gateway, mqtt=top.mqtt, buffer=top.buffer, health=top.health,
                  log_level=top.log_level, buses=list(buses.values()), devices=devices,
                  rules=[rule for _, rule in rules], commands=top.commands,
                  control=top.control, update=top.update, billing=top.billing,
                  local=top.local)


def _load_plugin(group: str, name: Any, path: Path_, problems: _Problems) -> Any:
    if not isinstance(name, str):
        problems.add(path, t("config.missing" if name is None else "config.not_a_name"))
        return None
    try:
        return registry.load(group, name)
    except KeyError as exc:
        problems.add(path, str(exc.args[0]))
        return None


def _buses(raw: list[dict[str, Any]], problems: _Problems) -> dict[str, BusConfig]:
    buses: dict[str, BusConfig] = {}
    for index, item in enumerate(raw):
        driver = _load_plugin(registry.DRIVERS, item.get("driver"), ("buses", index, "driver"),
                              problems)
        if driver is None:
            continue
        try:
            bus = driver.bus_model.model_validate(item)
        except ValidationError as exc:
            problems.add_validation(exc, ("buses", index))
            continue
        if bus.id in buses:
            problems.add(("buses", index, "id"), t("config.bus_twice", id=bus.id))
            continue
        buses[bus.id] = bus
    return buses


def _devices(raw: list[dict[str, Any]], buses: dict[str, BusConfig], problems: _Problems,
             ) -> tuple[list[DeviceConfig], list[tuple[Path_, dict[str, Any]]]]:
    """The devices, and the default rules their profiles bring (with where they come from)."""
    from agent.config import profiles  # noqa: PLC0415 - profiles read data files: only when needed

    devices: list[DeviceConfig] = []
    profile_rules: list[tuple[Path_, dict[str, Any]]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        bus_id = item.get("bus")
        if not isinstance(bus_id, str) or bus_id not in buses:  # a list is no key (fuzz)
            known = ", ".join(sorted(buses)) or t("none")
            problems.add(("devices", index, "bus"), t("config.unknown_bus", bus=bus_id,
                                                      known=known))
            continue
        driver = registry.load(registry.DRIVERS, buses[bus_id].driver)
        try:
            merged = profiles.apply(item, driver=buses[bus_id].driver)
            defaults = profiles.rules_for(item)
        except ValueError as exc:
            problems.add(("devices", index, "rules" if "rules" in str(exc) else "profile"),
                         str(exc))
            continue
        try:
            device = driver.device_model.model_validate(merged)
        except ValidationError as exc:
            problems.add_validation(exc, ("devices", index))
            continue
        if device.id in seen:
            problems.add(("devices", index, "id"), t("config.device_twice", id=device.id))
            continue
        seen.add(device.id)
        devices.append(device)
        profile_rules.extend((("devices", index, "profile"), rule) for rule in defaults)
    return devices, profile_rules


def _rules(entries: list[tuple[Path_, dict[str, Any]]],
           problems: _Problems) -> list[tuple[Path_, RuleConfig]]:
    """Validate each rule with its type's model. A rule of the file whose id equals a profile
    default's replaces that default (that is how a technician overrides one wholesale)."""
    own_ids = {item.get("id") for path, item in entries if path[0] == "rules"}
    rules: list[tuple[Path_, RuleConfig]] = []
    seen: set[str] = set()
    for path, item in entries:
        from_profile = path[0] == "devices"
        if from_profile and item.get("id") in own_ids:
            continue
        rule_type = _load_plugin(registry.RULES, item.get("type"),
                                 path if from_profile else (*path, "type"), problems)
        if rule_type is None:
            continue
        try:
            rule = rule_type.config_model.model_validate(item)
        except ValidationError as exc:
            if from_profile:  # a profile default made invalid by a device's override
                for error in exc.errors():
                    problems.add(path, t("config.default_rule", id=item.get("id"),
                                         path=dotted(tuple(error["loc"])),
                                         problem=_message(error)))
            else:
                problems.add_validation(exc, path)
            continue
        if rule.id in seen:
            problems.add((*path, "id"), t("config.rule_twice", id=rule.id))
            continue
        seen.add(rule.id)
        rules.append((path, rule))
    return rules


def _cross_check(devices: list[DeviceConfig], rules: list[tuple[Path_, RuleConfig]],
                 problems: _Problems) -> None:
    known = {f"{d.id}/{p.name}" for d in devices for p in d.points}
    from agent.billing.meters import derived_points  # noqa: PLC0415 - a leaf module

    known |= {f"{d.id}/{name}" for d in devices for name in derived_points(d)}
    device_ids = {d.id for d in devices}
    for path, rule in rules:
        for ref in rule.points():
            field = "point" if "point" in type(rule).model_fields else "device"
            if ref.endswith("/*"):
                if ref[:-2] not in device_ids:
                    problems.add((*path, field), t("config.unknown_device", device=ref[:-2],
                                                   ref=ref))
            elif ref not in known:
                problems.add((*path, field), t("config.unknown_point", ref=ref))
