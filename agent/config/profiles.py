"""Device profiles: a device entry with `profile:` gets the profile's points, poll period and rules.

A profile is a data file in `drivers/profiles/NAME.yaml`, or in the package a driver names in its
capabilities (`agent.sdk.capabilities`: a third-party driver ships its own), shipped as package
data, read with `importlib.resources`, parsed once. It declares the driver family it applies to
(one an installed driver declares), a default poll period, its points (semantics + protocol
mapping) and the default alert rules of its kind.

Merging is field by field, so a technician overrides only what differs on site:

    - id: vmc-b
      profile: vmc-caisson
      poll: 10s                                   # beats the profile's poll
      points:
        - {name: exhaust_pressure, scale: 1}      # same name: these fields replace the profile's
        - {name: duct_temp, register: input:3}    # new name: appended
      rules: {low-depression: {below: 40}, filter-clogged: false}

`rules:` is read here and dropped from the entry (the device model knows nothing of it): the
rules themselves come from `default_rules()` / `rules_for()`, which the config loader calls.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml

from agent.sdk import registry

PACKAGE = "drivers.profiles"  # the profiles shipped here; a driver may bring its own package
_PROFILE_KEYS = {"name", "description", "driver", "poll", "equipment", "points", "rules", "source"}
# A default rule may not change what it is: those keys define it, the rest tune it.
_FIXED_RULE_KEYS = {"id", "type", "point", "device"}


def families() -> set[str]:
    """The `driver:` values a profile may declare: the families the installed drivers declare
    (`agent.sdk.capabilities`), so a third-party driver's profiles need no change here."""
    return {caps.family for caps in registry.drivers().values()}


def _packages() -> tuple[str, ...]:
    """Where profile files are: ours first, then each driver's own package."""
    extra = {caps.profiles for caps in registry.drivers().values() if caps.profiles}
    return (PACKAGE, *sorted(extra - {PACKAGE}))


@cache
def _names_in(package: str) -> tuple[str, ...]:
    return tuple(sorted(entry.name.removesuffix(".yaml")
                        for entry in resources.files(package).iterdir()
                        if entry.name.endswith(".yaml")))


def _where(name: str) -> str | None:
    """The package holding profile `name` (the first one, ours win a clash)."""
    return next((package for package in _packages() if name in _names_in(package)), None)


def installed() -> tuple[str, ...]:
    """Names of the installed profiles: `drivers/profiles/` and the drivers' own."""
    return tuple(sorted({name for package in _packages() for name in _names_in(package)}))


def _load(name: str) -> dict[str, Any]:
    package = _where(name)
    if package is None:
        raise ValueError(f"unknown profile {name!r}; installed: {', '.join(installed())}")
    return _parsed(package, name)


@cache
def _parsed(package: str, name: str) -> dict[str, Any]:
    text = resources.files(package).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    _check_profile(name, data, f"{package.replace('.', '/')}/{name}.yaml")
    return data  # type: ignore[no-any-return]  # shape checked just above


def load(name: str) -> dict[str, Any]:
    """A deep copy of profile `name` (callers may mutate it; the cache stays pristine)."""
    if not isinstance(name, str):
        raise ValueError(f"profile must be a name; installed: {', '.join(installed())}")
    return copy.deepcopy(_load(name))


def _check_profile(name: str, data: Any, path: str) -> None:
    # A broken data file is a packaging bug, but it must still name the file and the problem.
    where = f"profile {name!r} ({path})"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: not a mapping")
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if data.get("name") != name:
        raise ValueError(f"{where}: `name` must be {name!r}")
    known = families()
    if data.get("driver") not in known:
        raise ValueError(f"{where}: `driver` must be one of {', '.join(sorted(known))}")
    points = data.get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) and "name" in p
                                               for p in points):
        raise ValueError(f"{where}: `points` must be a list of mappings with a name")
    rules = data.get("rules", {})
    if not isinstance(rules, dict) or not all(isinstance(r, dict) and "type" in r
                                              for r in rules.values()):
        raise ValueError(f"{where}: `rules` must map rule names to mappings with a type")


# -- merging ------------------------------------------------------------------------------------


def apply(entry: dict[str, Any], driver: str | None = None) -> dict[str, Any]:
    """The device entry with its profile merged in (the entry itself is not modified).

    `driver` (the bus's driver name), when given, is checked against the profile's family.
    Raises ValueError with a one-line message for an unknown profile or a bad `rules:` key.
    """
    name = entry.get("profile")
    if name is None:
        if "rules" in entry:
            raise ValueError("`rules:` tunes the default rules of a profile; this device has no "
                             "`profile:` (write its rules in the top-level `rules:` list)")
        return entry
    profile = load(name)
    if driver is not None and not _fits(driver, profile["driver"]):
        raise ValueError(f"profile {name!r} is for {profile['driver']} devices; this device's "
                         f"bus uses driver {driver!r}")
    check_overrides(name, entry.get("rules"))
    merged = {key: value for key, value in entry.items() if key != "rules"}
    if "poll" not in entry and "poll" in profile:
        merged["poll"] = profile["poll"]
    merged["points"] = merge_points(profile["points"], entry.get("points"))
    return merged


def _fits(driver: str, family: str) -> bool:
    try:
        return registry.capabilities(driver).fits(family)
    except KeyError:  # an unknown driver: the bus entry reports it, not the profile
        return True


def merge_points(base: list[dict[str, Any]], own: Any) -> Any:
    """Profile points, each updated by the device's point of the same name; new names appended.

    A malformed `points:` (not a list of mappings) is returned as is, so that the device model
    reports it at its real path instead of a vague profile error here.
    """
    if own is None:
        return [dict(point) for point in base]
    if not isinstance(own, list) or not all(isinstance(p, dict) for p in own):
        return own
    merged = [dict(point) for point in base]
    at = {point["name"]: index for index, point in enumerate(merged)}
    for point in own:
        index = at.pop(point.get("name"), None)  # pop: a second entry of one name is appended,
        if index is None:                         # so the model reports it as declared twice
            merged.append(point)  # a new point, in the technician's order
        else:
            merged[index].update(point)
    return merged


# -- default rules ------------------------------------------------------------------------------


def check_overrides(name: str, overrides: Any) -> None:
    """Validate a device's `rules:` against profile `name`; ValueError names what is wrong."""
    if overrides is None:
        return
    rules = load(name).get("rules", {})
    if not isinstance(overrides, Mapping):
        raise ValueError("rules: write a mapping of rule name to false (disable) or to the "
                         "settings to change, e.g. {low-depression: {below: 40}}")
    for rule, change in overrides.items():
        if rule not in rules:
            known = ", ".join(sorted(rules)) or "none"
            raise ValueError(f"rules.{rule}: profile {name!r} has no rule {rule!r}; its rules: "
                             f"{known}")
        if isinstance(change, bool):
            continue  # false disables, true keeps the default
        if not isinstance(change, Mapping):
            raise ValueError(f"rules.{rule}: write false to disable it or a mapping of settings "
                             f"to change, not {change!r}")
        fixed = sorted(set(change) & _FIXED_RULE_KEYS)
        if fixed:
            raise ValueError(f"rules.{rule}: {', '.join(fixed)} cannot be overridden; disable "
                             "the rule and write your own in the top-level `rules:` list")


def default_rules(device_id: str, profile_name: str,
                  overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Complete rule dicts for one device: ids `{device}-{rule}`, points `{device}/{name}`.

    `overrides` is the device's `rules:` mapping: `{rule: false}` drops a rule, `{rule: {...}}`
    replaces some of its settings. Raises ValueError like `apply` for a bad mapping.
    """
    check_overrides(profile_name, overrides)
    overrides = overrides or {}
    out: list[dict[str, Any]] = []
    for rule_name, rule in load(profile_name).get("rules", {}).items():
        change = overrides.get(rule_name, True)
        if change is False:
            continue
        merged = {**rule, **(change if isinstance(change, Mapping) else {})}
        out.append(_resolve(device_id, rule_name, merged))
    return out


def rules_for(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The default rules of a raw device entry (none without a profile)."""
    name = entry.get("profile")
    if name is None:
        return []
    return default_rules(str(entry.get("id")), name, entry.get("rules"))


def _resolve(device_id: str, rule_name: str, rule: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {"id": f"{device_id}-{rule_name}"}
    for key, value in rule.items():
        if isinstance(value, str):
            value = value.replace("{device}", device_id)
        resolved[key] = value
    if rule.get("type") == "comm_lost":
        resolved.setdefault("device", device_id)
    point = resolved.get("point")
    if isinstance(point, str) and "/" not in point:
        resolved["point"] = f"{device_id}/{point}"  # relative name: a point of this device
    return resolved
