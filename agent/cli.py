"""`batigate`: the technician's command line (DESIGN §3.4).

Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from agent import __version__
from agent.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/batigate/gateway.yaml")
EXIT_CONFIG = 2
EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts the agent again


def _load_or_exit(path: Path) -> Any:
    from agent import config as config_mod  # noqa: PLC0415 - keep `--help` fast

    try:
        return config_mod.load(path)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {path}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batigate")
def main() -> None:
    """batigate: the building gateway agent.

    \b
    Quick start on a laptop:  make demo
    On a gateway:             batigate config check /etc/batigate/gateway.yaml
                              batigate run
    """


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
              show_default=True, help="the gateway config file")
def run(config_path: Path) -> None:
    """Run the agent until SIGTERM or Ctrl-C.

    \b
    Example:  batigate run --config /etc/batigate/gateway.yaml
    """
    import time  # noqa: PLC0415

    from agent import logs, supervisor  # noqa: PLC0415
    from agent.commands import confirm  # noqa: PLC0415

    logs.setup("info")
    # A config.apply that was never confirmed (the agent crashed on the new file) rolls back here.
    if line := confirm.check_at_start(config_path, now=time.time()):
        click.echo(line, err=True)
    config = _load_or_exit(config_path)
    logs.setup(config.log_level)
    if asyncio.run(_run_until_signal(config, supervisor)):
        click.echo("restart requested by a command; exiting for the service manager to restart",
                   err=True)
        sys.exit(EXIT_RESTART)


async def _run_until_signal(config: Any, supervisor: Any) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return bool(await supervisor.serve(config, shutdown_trigger=stop.wait))


@main.group("config")
def config_group() -> None:
    """Check and show the config file."""


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def config_check(file: Path, as_json: bool) -> None:
    """Report every error of FILE as FILE:LINE: path.to.field: what is wrong.

    \b
    Example:  batigate config check gateway.yaml && echo OK
    """
    from agent import config as config_mod  # noqa: PLC0415

    try:
        config = config_mod.load(file)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": exc.problems}))
        else:
            for line in exc.problems:
                click.echo(line, err=True)
            click.echo(f"{len(exc.problems)} problem(s)", err=True)
        sys.exit(EXIT_CONFIG)
    points = sum(len(d.points) for d in config.devices)
    if as_json:
        click.echo(json.dumps({"ok": True, "buses": len(config.buses),
                               "devices": len(config.devices), "points": points,
                               "rules": len(config.rules), "digest": config.digest}))
    else:
        click.echo(f"{file}: OK ({len(config.buses)} buses, {len(config.devices)} devices, "
                   f"{points} points, {len(config.rules)} rules)")
        if config.mqtt.tls is None:
            click.echo(f"{file}: warning: mqtt.tls is off (lab brokers only)", err=True)


@config_group.command("show")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
              show_default=True)
def config_show(config_path: Path) -> None:
    """Print the effective config (defaults filled in, secrets masked) as JSON."""
    from agent.redact import effective  # noqa: PLC0415

    click.echo(json.dumps(effective(_load_or_exit(config_path)), indent=2))


@main.command()
@click.option("--port", default=5020, show_default=True, help="Modbus TCP port (0: any free)")
@click.option("--host", default="127.0.0.1", show_default=True)
def sim(port: int, host: str) -> None:
    """Serve the simulated building (Modbus TCP) until Ctrl-C.

    \b
    Example:  batigate sim --port 5020
    """
    from agent.sim.modbus_building import ModbusBuilding  # noqa: PLC0415

    async def serve() -> None:
        building = ModbusBuilding(host=host)
        bound = await building.start(port)
        click.echo(f"simulated building on modbus-tcp {host}:{bound} (units 1 VMC, 2 pump, "
                   f"3 spare VMC); Ctrl-C stops")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await building.stop()

    asyncio.run(serve())


@main.command()
@click.option("--seconds", type=float, default=0, help="stop by itself after this long (0: never)")
def demo(seconds: float) -> None:
    """Simulated building + local broker + agent, with the messages shown live. Ctrl-C stops."""
    from agent import demo as demo_mod  # noqa: PLC0415

    sys.exit(asyncio.run(demo_mod.run(seconds)))


@main.group("buffer")
def buffer_group() -> None:
    """Inspect the outbox."""


@buffer_group.command("stats")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
              show_default=True)
@click.option("--json", "as_json", is_flag=True)
def buffer_stats(config_path: Path, as_json: bool) -> None:
    """Depth, oldest age and sequence range of the outbox."""
    from agent.outbox import Outbox  # noqa: PLC0415
    import time  # noqa: PLC0415

    config = _load_or_exit(config_path)
    outbox = Outbox(config.buffer.path, max_bytes=int(config.buffer.max_mb * 2**20),
                    commit_interval=config.buffer.commit_interval, clock=time.time)
    try:
        stats = outbox.stats()
    finally:
        outbox.close()
    if as_json:
        click.echo(json.dumps(stats))
    else:
        for key, value in stats.items():
            click.echo(f"{key:>12}: {value}")


@main.group("mbus")
def mbus_group() -> None:
    """Wired M-Bus tools."""


@mbus_group.command("decode")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
def mbus_decode(file: Path, as_json: bool) -> None:
    """Decode one M-Bus frame written as hex bytes.

    \b
    Example:  batigate mbus decode meter.hex --json
    """
    from drivers.mbus.codec import main_decode  # noqa: PLC0415

    sys.exit(main_decode(str(file), as_json))
