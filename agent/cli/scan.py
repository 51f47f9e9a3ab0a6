"""`batigate scan modbus|mbus|wmbus`: find what answers (or transmits) on a bus, and add it to
the config.

The scan talks on the bus itself, so it refuses to run while the agent does (two masters on one
RS-485 line corrupt each other's frames): stop the service first.

Adding found devices edits the config file as text (its comments are the site's notes): the new
entries go into the `devices:` list, the result is validated as a whole before it replaces the
file, and the previous file is kept as `.bak`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from agent.cli.common import (EXIT_CONFIG, EXIT_FAILURE, complete_bus, config_option, console,
                              emit_json, fail, json_option, load_or_exit, progress, run)
from agent.i18n import t


@click.group("scan")
def scan_group() -> None:
    """Find the devices that answer on a bus (stop the agent first)."""


def _parse_ids(text: str, low: int, high: int) -> list[int]:
    ids: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            start, end = int(first), int(last or first)
        except ValueError:
            raise click.BadParameter(t("scan.bad_ids", part=part)) from None
        if not low <= start <= end <= high:
            raise click.BadParameter(t("scan.ids_range", part=part, low=low, high=high))
        ids.update(range(start, end + 1))
    return sorted(ids)


def _bus_or_exit(config: Any, bus_id: str, drivers: tuple[str, ...]) -> Any:
    bus = next((b for b in config.buses if b.id == bus_id), None)
    if bus is None or bus.driver not in drivers:
        fitting = ", ".join(b.id for b in config.buses if b.driver in drivers) or t("none")
        fail(t("scan.no_bus", drivers="/".join(drivers), bus=bus_id, fitting=fitting),
             EXIT_CONFIG)
    return bus


def _refuse_if_agent_runs(config: Any) -> None:
    from agent.runtime import control  # noqa: PLC0415

    if run(control.running(Path(config.control.socket))):
        fail(t("scan.agent_running"), EXIT_FAILURE)


# -- Modbus ---------------------------------------------------------------------------------------

@scan_group.command("modbus")
@click.option("--bus", "bus_id", required=True, shell_complete=complete_bus,
              help="a modbus-tcp or modbus-rtu bus of the config")
@click.option("--ids", default="1-247", show_default=True, help="unit ids to try: 1-247, 1,5,17")
@click.option("--timeout", type=click.FloatRange(0.05, 10), default=0.3, show_default=True,
              help="seconds to wait for each unit")
@click.option("--add", is_flag=True, help="add the units found to the config (with --profile)")
@click.option("--profile", help="device profile for the added units, e.g. vmc-caisson")
@click.option("--prefix", default="unit", show_default=True, help="id prefix of added devices")
@config_option
@json_option
def scan_modbus(bus_id: str, ids: str, timeout: float, add: bool, profile: str | None,
                prefix: str, config_path: Path, as_json: bool) -> None:
    """Find the unit ids that answer on a Modbus bus and read their identification (FC 43/14)
    where they offer it.

    \b
    Examples:
      batigate scan modbus --bus rs485-1
      batigate scan modbus --bus lan --ids 1-10 --json
      batigate scan modbus --bus rs485-1 --ids 17 --add --profile vmc-caisson
    """
    config = load_or_exit(config_path)
    bus = _bus_or_exit(config, bus_id, ("modbus-tcp", "modbus-rtu"))
    units = _parse_ids(ids, 1, 247)
    _refuse_if_agent_runs(config)
    found, error = run(_scan_modbus(bus, units, timeout, quiet=as_json))
    if error:
        fail(error, EXIT_FAILURE, as_json=as_json)
    entries = [{"id": f"{prefix}-{u['unit']}", "bus": bus.id, "address": u["unit"],
                **({"profile": profile} if profile else {})} for u in found]
    added = _maybe_add(config_path, entries, add, as_json)
    if as_json:
        emit_json({"ok": True, "bus": bus.id, "found": found, "added": added})
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=t("scan.modbus.title", count=len(found), bus=bus.id))
    for column in ("unit", "vendor", "product", "revision"):
        table.add_column(t(f"scan.modbus.col.{column}"))
    for unit in found:
        ident = unit["identification"] or {}
        table.add_row(str(unit["unit"]), ident.get("vendor", "—"), ident.get("product", "—"),
                      ident.get("revision", "—"))
    console().print(table)
    _print_added(added, add)


async def _scan_modbus(bus: Any, units: list[int], timeout: float,
                       quiet: bool) -> tuple[list[dict[str, Any]], str | None]:
    from agent.sdk.driver import BusStats  # noqa: PLC0415
    from agent.sdk.errors import DeviceUnavailable  # noqa: PLC0415
    from drivers.modbus.link import ModbusLink, Refused  # noqa: PLC0415

    link = ModbusLink(bus, BusStats())
    found: list[dict[str, Any]] = []
    try:
        try:
            await link.open(max(timeout, 2.0))
        except DeviceUnavailable as exc:
            return [], t("scan.bus_error", bus=bus.id, error=exc)
        # Every unit is found first, identified after: a device that mishandles FC 43 (libmodbus
        # answers it late over TCP; over RTU it misreads the frame, and so do the other libmodbus
        # slaves that hear it) then cannot hide the units probed after it.
        with progress() as bar:
            task = bar.add_task(t("scan.scanning", bus=bus.id), total=len(units), visible=not quiet)
            for unit in units:
                try:
                    await link.open(max(timeout, 2.0))
                    await link.read("holding", 0, 1, unit, timeout)
                    found.append({"unit": unit})
                except Refused:  # an exception answer is an answer: someone is there
                    found.append({"unit": unit})
                except DeviceUnavailable:
                    pass
                bar.advance(task)
            task = bar.add_task(t("scan.identification"), total=len(found), visible=not quiet)
            for entry in found:
                entry["identification"] = await _identify(link, entry["unit"], timeout)
                bar.advance(task)
    finally:
        link.close()
    return found, None


async def _identify(link: Any, unit: int, timeout: float) -> dict[str, str] | None:
    """Basic device identification (FC 43 / MEI 14, objects 0-2), None when not offered."""
    from agent.sdk.errors import DeviceUnavailable  # noqa: PLC0415
    from drivers.modbus.link import Refused  # noqa: PLC0415

    try:
        await link.open(max(timeout, 2.0))
        info = await link.identify(unit, timeout)
    except (Refused, DeviceUnavailable):
        return None
    names = {0: "vendor", 1: "product", 2: "revision"}
    ident = {names[k]: _text(v) for k, v in info.items() if k in names}
    return ident or None


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("latin-1").strip()
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


# -- M-Bus ----------------------------------------------------------------------------------------

@scan_group.command("mbus")
@click.option("--bus", "bus_id", required=True, shell_complete=complete_bus,
              help="an mbus bus of the config")
@click.option("--primary/--no-primary", default=True, show_default=True,
              help="try primary addresses 0-250")
@click.option("--secondary/--no-secondary", default=True, show_default=True,
              help="secondary-address wildcard search")
@click.option("--addresses", default="0-250", show_default=True, help="primary addresses to try")
@click.option("--timeout", type=click.FloatRange(0.05, 10), default=0.3, show_default=True)
@click.option("--add", is_flag=True, help="add the meters found to the config (with --profile)")
@click.option("--profile", help="device profile for the added meters, e.g. water-meter")
@click.option("--prefix", default="meter", show_default=True, help="id prefix of added devices")
@config_option
@json_option
def scan_mbus(bus_id: str, primary: bool, secondary: bool, addresses: str, timeout: float,
              add: bool, profile: str | None, prefix: str, config_path: Path,
              as_json: bool) -> None:
    """Find the meters on an M-Bus line: primary addresses 0-250, then a secondary-address
    wildcard search (finds meters that share or lack a primary address).

    \b
    Examples:
      batigate scan mbus --bus meters
      batigate scan mbus --bus meters --no-secondary --addresses 1-20 --json
      batigate scan mbus --bus meters --add --profile water-meter
    """
    config = load_or_exit(config_path)
    bus = _bus_or_exit(config, bus_id, ("mbus",))
    wanted = _parse_ids(addresses, 0, 250)
    _refuse_if_agent_runs(config)
    result = run(_scan_mbus(bus, primary, secondary, wanted, timeout, quiet=as_json))
    meters = _unique(result.meters)
    entries = [{"id": f"{prefix}-{m.id}", "bus": bus.id, **m.config(),
                **({"profile": profile} if profile else {})} for m in meters]
    added = _maybe_add(config_path, entries, add, as_json)
    found = [{"how": m.how, "primary": m.primary, "id": m.id, "manufacturer": m.manufacturer,
              "version": m.version, "medium": m.medium} for m in meters]
    if as_json:
        emit_json({"ok": True, "bus": bus.id, "found": found, "collisions": result.collisions,
                   "added": added})
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=t("scan.mbus.title", count=len(found), bus=bus.id))
    for column in ("how", "primary", "id", "manufacturer", "version", "medium"):
        table.add_column(t(f"scan.mbus.col.{column}"))
    for meter in found:
        table.add_row(t(f"scan.mbus.how.{meter['how']}"), str(meter["primary"]), meter["id"],
                      meter["manufacturer"] or "—", str(meter["version"]), meter["medium"] or "—")
    console().print(table)
    for collision in result.collisions:
        click.secho(t("scan.mbus.collision", where=_collision_where(collision),
                      advice=_collision_advice(collision, meters)), fg="yellow", err=True)
    _print_added(added, add)


def _collision_advice(collision: str, meters: list[Any]) -> str:
    """What a technician can do about meters that answer together (e.g. factory address 0)."""
    kind, _, where = collision.partition(" ")
    shared = [m.id for m in meters if kind == "primary" and m.how == "secondary"
              and str(m.primary) == where]
    if shared:
        return t("scan.mbus.shared", count=len(shared), meters=", ".join(shared))
    return t("scan.mbus.several")


def _collision_where(collision: str) -> str:
    """`primary 0` / `secondary 1234FFFF...` (the scan's words) in the technician's language."""
    kind, _, where = collision.partition(" ")
    if kind in ("primary", "secondary"):
        return t(f"scan.mbus.at.{kind}", where=where)
    return collision


def _unique(meters: list[Any]) -> list[Any]:
    """A meter found by both searches is listed once, by its primary address."""
    seen: set[str] = set()
    out = []
    for meter in meters:
        if meter.id not in seen:
            seen.add(meter.id)
            out.append(meter)
    return out


async def _scan_mbus(bus: Any, primary: bool, secondary: bool, addresses: list[int],
                     timeout: float, quiet: bool) -> Any:
    from drivers.mbus.scan import scan  # noqa: PLC0415

    with progress() as bar:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                label = t(f"scan.mbus.phase.{phase}") if phase in ("primary", "secondary") \
                    else phase
                tasks[phase] = bar.add_task(label, total=total, visible=not quiet)
            bar.update(tasks[phase], completed=done)

        return await scan(bus, primary=primary, secondary=secondary, addresses=addresses,
                          timeout=timeout, progress=report)


# -- wireless M-Bus ---------------------------------------------------------------------------------

@scan_group.command("wmbus")
@click.option("--bus", "bus_id", required=True, shell_complete=complete_bus,
              help="a wmbus bus of the config (its receiver and keys file are used)")
@click.option("--listen", "listen_for", default="10m", show_default=True,
              help="how long to listen: 30s, 10m, 1h (meters send every 8 s to hours)")
@click.option("--add", is_flag=True, help="add the meters heard to the config")
@click.option("--profile", help="profile of the added meters (default: from their medium: "
                                "water-meter, heat-meter, heat-cost-allocator)")
@click.option("--prefix", default="meter", show_default=True, help="id prefix of added devices")
@click.option("--min-count", type=click.IntRange(1), default=1, show_default=True,
              help="--add only meters heard at least this many times (a neighbour's meter at "
                   "the edge of range is heard rarely)")
@config_option
@json_option
def scan_wmbus(bus_id: str, listen_for: str, add: bool, profile: str | None, prefix: str,
               min_count: int, config_path: Path, as_json: bool) -> None:
    """Listen on a radio bus and show every meter heard, live: id, manufacturer, medium,
    version, encrypted, key (yes / no / wrong / - for clear), RSSI, count, last heard.

    \b
    Examples:
      batigate scan wmbus --bus radio --listen 10m
      batigate scan wmbus --bus radio --listen 30m --add --min-count 2
      batigate scan wmbus --bus radio --listen 5m --json
    """
    from agent.sdk.durations import parse_duration  # noqa: PLC0415

    config = load_or_exit(config_path)
    bus = _bus_or_exit(config, bus_id, ("wmbus",))
    try:
        seconds = parse_duration(listen_for)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    _refuse_if_agent_runs(config)
    mine = [d for d in config.devices if d.bus == bus.id]
    driver = run(_listen_wmbus(bus, seconds, mine, quiet=as_json))
    from drivers.wmbus import scan as wscan  # noqa: PLC0415
    from drivers.wmbus.reception import rows  # noqa: PLC0415

    heard = driver.reception.table()
    entries = [wscan.device_entry(h, bus.id, prefix, profile) for h in heard
               if h.configured is None and h.count >= min_count]
    added = _maybe_add(config_path, entries, add, as_json)
    if as_json:
        emit_json({"ok": True, "bus": bus.id, "seconds": seconds, "heard": list(rows(heard)),
                   "counters": driver.stats.as_dict(), "added": added})
        return
    console().print(_wmbus_table(driver, final=True))
    _print_added(added, add)


async def _listen_wmbus(bus: Any, seconds: float, devices: list[Any], quiet: bool) -> Any:
    from rich.live import Live  # noqa: PLC0415

    from drivers.wmbus.scan import listen  # noqa: PLC0415

    if quiet:
        return await listen(bus, seconds, devices=devices)
    with Live(console=console(), auto_refresh=False, transient=True) as live:
        def update(driver: Any) -> None:
            live.update(_wmbus_table(driver, final=False), refresh=True)

        return await listen(bus, seconds, update, devices=devices)


def _wmbus_table(driver: Any, *, final: bool) -> Any:
    import time  # noqa: PLC0415

    from rich.table import Table  # noqa: PLC0415

    heard = sorted(driver.reception.table(), key=lambda h: (h.rssi is None, -(h.rssi or 0)))
    extra = driver.stats.extra
    state = "" if final else t("scan.wmbus.listening" if extra.get("receiving")
                               else "scan.wmbus.opening")
    table = Table(title=t("scan.wmbus.title", count=len(heard), bus=driver.bus.id) + state,
                  caption=t("scan.wmbus.caption", telegrams=extra["telegrams"],
                            repeats=extra["duplicates"], bad_crc=extra["bad_crc"],
                            undecryptable=extra["undecryptable"], garbage=driver.stats.garbage))
    for column in ("id", "manufacturer", "medium", "version", "encrypted", "key", "rssi",
                   "count", "last", "device"):
        table.add_column(t(f"scan.wmbus.col.{column}"))
    now = time.time()
    for h in heard:
        table.add_row(h.id, h.manufacturer or "—", h.medium or "—",
                      "—" if h.version is None else str(h.version),
                      "?" if h.encrypted is None else t(f"value.{str(h.encrypted).lower()}"),
                      _key_state(h.key), "—" if h.rssi is None else f"{h.rssi:.0f}", str(h.count),
                      t("scan.wmbus.ago", s=f"{now - h.last_heard:.0f}"), h.configured or "—")
    return table


def _key_state(key: str) -> str:
    """The reception table's `yes` / `no` / `wrong` / `-` in the technician's language."""
    return t(f"scan.wmbus.key.{key}") if key in ("yes", "no", "wrong") else key


# -- adding to the config -------------------------------------------------------------------------

def _maybe_add(config_path: Path, entries: list[dict[str, Any]], add: bool,
               as_json: bool) -> list[str]:
    if not add or not entries:
        return []
    from agent.config import loader as config_mod  # noqa: PLC0415

    text = config_path.read_text(encoding="utf-8")
    existing = config_mod.load(config_path)
    taken = {d.id for d in existing.devices}
    addresses = {(d.bus, getattr(d, "address", None), getattr(d, "secondary", None))
                 for d in existing.devices}
    fresh = [e for e in entries if e["id"] not in taken
             and (e["bus"], e.get("address"), e.get("secondary")) not in addresses]
    if not fresh:
        return []
    new_text = add_devices(text, fresh)
    from agent.sdk.errors import ConfigError  # noqa: PLC0415

    try:
        config_mod.parse(new_text, str(config_path))
    except ConfigError as exc:
        fail(t("scan.cannot_add", problems="; ".join(exc.problems[:5])), EXIT_FAILURE,
             as_json=as_json)
    backup = config_path.with_name(config_path.name + ".bak")
    backup.write_text(text, encoding="utf-8")
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(config_path)
    return [e["id"] for e in fresh]


def _flow(entry: dict[str, Any]) -> str:
    import json  # noqa: PLC0415

    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in entry.items()) + "}"


def add_devices(text: str, entries: list[dict[str, Any]]) -> str:
    """Insert `entries` into the `devices:` list of a config file's text, keeping everything
    else (comments, order, layout) as it is."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^devices:\s*(\[\s*\])?\s*(#.*)?$", line)
        if match is None:
            continue
        indent = "  "
        for following in lines[index + 1:]:
            item = re.match(r"^(\s*)- ", following)
            if item:
                indent = item.group(1)
                break
            if following.strip() and not following.lstrip().startswith("#"):
                break
        new = [f"{indent}- {_flow(e)}" for e in entries]
        head = "devices:" + (f"  {match.group(2)}" if match.group(2) else "")
        return "\n".join([*lines[:index], head, *new, *lines[index + 1:]]) + "\n"
    return text.rstrip("\n") + "\ndevices:\n" + "".join(f"  - {_flow(e)}\n" for e in entries)


def _print_added(added: list[str], asked: bool) -> None:
    if added:
        click.echo(t("scan.added", devices=", ".join(added)))
    elif asked:
        click.echo(t("scan.nothing_new"))
    else:
        click.echo(t("scan.how_to_add"))
