"""What every `batigate` command shares: exit codes, the config loader, output in two forms.

Human output goes through rich (tables, progress bars on stderr so stdout stays clean for
pipes); `--json` prints exactly one JSON document on stdout. Exit codes: 0 ok, 1 runtime failure
(a device, the broker, a check that failed), 2 usage or config error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from agent.sdk.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/batigate/gateway.yaml")
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
T = TypeVar("T")

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
    show_default=True, envvar="BATIGATE_CONFIG", help="the gateway config file")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="one JSON document on stdout, for scripts")


def load_or_exit(path: Path) -> Any:
    from agent.config import loader as config_mod  # noqa: PLC0415 - keep `--help` fast
    from agent.i18n import t  # noqa: PLC0415

    try:
        return config_mod.load(path)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        click.echo(t("config.problems_in", count=len(exc.problems), path=path), err=True)
        sys.exit(EXIT_CONFIG)


def fail(message: str, code: int = EXIT_FAILURE, *, as_json: bool = False,
         **extra: Any) -> NoReturn:
    if as_json:  # machine output stays English whatever the language
        from agent.i18n import english  # noqa: PLC0415

        click.echo(json.dumps({"ok": False, "error": english(message), **extra}, default=str))
    else:
        from agent.i18n import t  # noqa: PLC0415

        click.secho(t("error", message=message), fg="red", err=True)
    sys.exit(code)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, default=str, indent=None))


def console(err: bool = False) -> Any:
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=err, highlight=False, soft_wrap=False)


def progress(transient: bool = True) -> Any:
    """A progress bar on stderr (the technician sees it; a pipe on stdout does not)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress,  # noqa: PLC0415
                               TextColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console(err=True), transient=transient)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def control_path(config_path: Path, explicit: Path | None = None) -> Path:
    """The agent's socket: --socket, else the config's control.socket, else the default."""
    if explicit is not None:
        return explicit
    from agent.config.models import ControlConfig  # noqa: PLC0415

    try:
        from agent.config import loader as config_mod  # noqa: PLC0415

        return Path(config_mod.load(config_path).control.socket)
    except ConfigError:
        return ControlConfig().socket


def complete_device(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of device ids from the config file."""
    config = _quiet_config(ctx)
    return [d.id for d in config.devices if d.id.startswith(incomplete)] if config else []


def complete_point(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    config = _quiet_config(ctx)
    device = ctx.params.get("device")
    if config is None or device is None:
        return []
    return [p.name for d in config.devices if d.id == device for p in d.points
            if p.name.startswith(incomplete)]


def complete_bus(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    config = _quiet_config(ctx)
    return [b.id for b in config.buses if b.id.startswith(incomplete)] if config else []


def _quiet_config(ctx: click.Context) -> Any:
    from agent.config import loader as config_mod  # noqa: PLC0415

    path = ctx.params.get("config_path") or DEFAULT_CONFIG
    try:
        return config_mod.load(path)
    except ConfigError:
        return None
