"""`batigate scan COMMAND`: find what answers (or transmits) on a bus, and add it to the config.

The subcommands are the drivers' own: each driver declares its scan (`agent.sdk.capabilities.Scan`:
its command, options and `run`), and this module gives every one the same frame: `--bus`
checked against the config, the refusal to run beside the agent, progress bars, the table or the
`--json` answer, and `--add`. A third-party driver's scan appears here without any change.

The scan talks on the bus itself, so it refuses to run while the agent does (two masters on one
RS-485 line corrupt each other's frames): stop the service first.

Adding found devices edits the config file as text (its comments are the site's notes): the new
entries go into the `devices:` list, the result is validated as a whole before it replaces the
file, and the previous file is kept as `.bak`.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import click

from agent.cli.common import (EXIT_CONFIG, EXIT_FAILURE, complete_bus, config_option, console,
                              emit_json, fail, json_option, load_or_exit, progress, run)
from agent.i18n import t
from agent.sdk.capabilities import Scan, ScanOption, ScanReport, ScanRequest


class ScanGroup(click.Group):
    """The subcommands come from the installed drivers, looked up when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(scans())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = scans().get(cmd_name)
        return None if found is None else command(cmd_name, *found)


@click.group("scan", cls=ScanGroup)
def scan_group() -> None:
    """Find the devices that answer on a bus (stop the agent first)."""


def scans() -> dict[str, tuple[Scan, tuple[str, ...]]]:
    """Each scan command with the driver names that declare it (`modbus`: tcp and rtu)."""
    from agent.sdk import registry  # noqa: PLC0415

    found: dict[str, tuple[Scan, tuple[str, ...]]] = {}
    for name, caps in registry.drivers().items():
        if caps.scan is not None:
            scan, drivers = found.get(caps.scan.command, (caps.scan, ()))
            found[caps.scan.command] = (scan, (*drivers, name))
    return found


def command(name: str, scan: Scan, drivers: tuple[str, ...]) -> click.Command:
    """The click command of one declared scan: the common options around the driver's own."""
    params: list[click.Parameter] = [
        click.Option(["--bus", "bus_id"], required=True, shell_complete=complete_bus,
                     help=f"a {' or '.join(drivers)} bus of the config"),
        *(_option(option) for option in scan.options),
        click.Option(["--add"], is_flag=True,
                     help="add what was found to the config (with --profile)"),
        click.Option(["--profile"], help="device profile for the added devices"),
        click.Option(["--prefix"], default=scan.prefix, show_default=True,
                     help="id prefix of added devices"),
    ]
    cmd = click.Command(name, callback=partial(_scan, scan, drivers), params=params,
                        help=scan.help)
    return json_option(config_option(cmd))  # type: ignore[no-any-return]


def _option(option: ScanOption) -> click.Option:
    flag = f"--{option.name}"
    if option.kind is bool:
        return click.Option([f"{flag}/--no-{option.name}"], default=option.default,
                            show_default=True, help=option.help)
    kind: Any = click.STRING
    if option.kind is int:
        kind = click.IntRange(_int(option.low), _int(option.high))
    elif option.kind is float:
        kind = click.FloatRange(option.low, option.high)
    return click.Option([flag], type=kind, default=option.default, show_default=True,
                        help=option.help,
                        callback=None if option.parse is None else partial(_parse, option.parse))


def _parse(parse: Any, ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A driver's parser as a click callback: its ValueError is a usage error (exit 2)."""
    del ctx, param
    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


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


def _scan(scan: Scan, drivers: tuple[str, ...], bus_id: str, add: bool, profile: str | None,
          prefix: str, config_path: Path, as_json: bool, **options: Any) -> None:
    from agent.sdk.errors import DriverError  # noqa: PLC0415

    config = load_or_exit(config_path)
    bus = _bus_or_exit(config, bus_id, drivers)
    _refuse_if_agent_runs(config)
    request = ScanRequest(bus=bus, options=options, prefix=prefix, profile=profile,
                          devices=[d for d in config.devices if d.bus == bus.id])
    view = View(quiet=as_json)
    try:
        report = run(_run(scan, request, view))
    except DriverError as exc:
        fail(t("scan.bus_error", bus=bus.id, error=exc), EXIT_FAILURE, as_json=as_json)
    added = _maybe_add(config_path, report.entries, add, as_json)
    if as_json:
        emit_json({"ok": True, "bus": bus.id, **report.json, "added": added})
        return
    console().print(table(report))
    for note in report.notes:
        click.secho(note, fg="yellow", err=True)
    _print_added(added, add)


async def _run(scan: Scan, request: ScanRequest, view: View) -> ScanReport:
    try:
        return await scan.run(request, view)
    finally:
        view.close()


class View:
    """How a scan shows it is working: a bar per step, or its findings redrawn in place; nothing
    with --json (stdout is then the answer)."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}
        self._live: Any = None

    def step(self, label: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if self._bars is None:
            self._bars = progress()
            self._bars.start()
        if label not in self._tasks:
            self._tasks[label] = self._bars.add_task(label, total=total)
        self._bars.update(self._tasks[label], completed=done, total=total)

    def show(self, report: ScanReport) -> None:
        if self.quiet:
            return
        if self._live is None:
            from rich.live import Live  # noqa: PLC0415

            self._live = Live(console=console(), auto_refresh=False, transient=True)
            self._live.start()
        self._live.update(table(report), refresh=True)

    def close(self) -> None:
        for shown in (self._bars, self._live):
            if shown is not None:
                shown.stop()


def table(report: ScanReport) -> Any:
    from rich.table import Table  # noqa: PLC0415

    out = Table(title=report.title, caption=report.caption)
    for column in report.columns:
        out.add_column(column)
    for row in report.rows:
        out.add_row(*row)
    return out


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
