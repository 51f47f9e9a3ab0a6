"""`batigate`: the technician's command line (DESIGN §3.4).

Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage. The commands live in small
modules (`cli_init`, `cli_scan`, `cli_local`, `cli_buffer`, `cli_selftest`, `cli_provision`,
`cli_sim`) that import their heavy dependencies inside the command, so `--help` and shell
completion stay fast.
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
from agent.cli.buffer import buffer_group
from agent.cli.common import DEFAULT_CONFIG, EXIT_CONFIG, load_or_exit
from agent.cli.init import init
from agent.cli.local import read, status, write
from agent.cli.meters import meters_group
from agent.cli.provision import provision
from agent.cli.release import release_group
from agent.cli.remote import register as register_remote
from agent.cli.remote_ops import config_group as remote_config_group
from agent.cli.remote_ops import update as remote_update
from agent.cli.scan import scan_group
from agent.cli.selftest import selftest
from agent.cli.sim import sim
from agent.cli.wmbus import wmbus_group
from agent.sdk.errors import ConfigError

EXIT_RESTART = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts the agent again


def _set_language(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from agent.i18n import set_language  # noqa: PLC0415

    set_language(value)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batigate")
@click.option("--lang", type=click.Choice(["en", "fr"]), default=None, expose_value=False,
              is_eager=True, callback=_set_language,
              help="language of the messages (default: from the locale, LANG / LC_ALL)")
def main() -> None:
    """batigate: the building gateway agent.

    \b
    Quick start on a laptop:  make demo
    Commissioning a gateway:  batigate init
                              batigate provision            (key + CSR for the CA)
                              batigate provision install-cert gw.crt
                              batigate scan modbus --bus rs485-1 --add --profile vmc-caisson
                              batigate selftest
                              batigate run                  (or systemctl start batigate)
    Diagnosing:               batigate status | read DEVICE | buffer stats
    Shell completion:         eval "$(batigate completion bash)"
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

    from agent.runtime import logs  # noqa: PLC0415

    from agent.runtime import supervisor

    from agent.lifecycle import update_trial  # noqa: PLC0415
    from agent.i18n import t  # noqa: PLC0415
    from agent.lifecycle import cert_trial  # noqa: PLC0415
    from agent.lifecycle.config_trial import ConfigTrial  # noqa: PLC0415

    logs.setup("info")
    # A config.apply that was never confirmed (the agent crashed on the new file) rolls back here.
    if line := ConfigTrial(config_path).check_at_start(now=time.time()):
        click.echo(line, err=True)
    config = load_or_exit(config_path)
    logs.setup(config.log_level)
    # An agent update on trial past its deadline goes back to the previous release here, in the
    # built-in agent; then the release in force takes this process over (exec: same PID).
    releases = config.update.releases
    for line in update_trial.check_at_start(config.update, now=time.time()):
        click.echo(line, err=True)
    # A rotated client certificate that never reached the broker in time: the previous pair.
    cert = cert_trial.of(config)
    if cert is not None and (line := cert.check_at_start(now=time.time())):
        click.echo(line, err=True)
    if line := update_trial.enter_current(releases, ["run", "--config", str(config_path)]):
        click.echo(line, err=True)
    if asyncio.run(_run_until_signal(config, supervisor)):
        click.echo(t("run.restart"), err=True)
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
    from agent.config import loader as config_mod  # noqa: PLC0415

    from agent.i18n import t  # noqa: PLC0415

    try:
        config = config_mod.load(file)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": exc.problems}))
        else:
            for line in exc.problems:
                click.echo(line, err=True)
            click.echo(t("config.problems", count=len(exc.problems)), err=True)
        sys.exit(EXIT_CONFIG)
    points = sum(len(d.points) for d in config.devices)
    if as_json:
        click.echo(json.dumps({"ok": True, "buses": len(config.buses),
                               "devices": len(config.devices), "points": points,
                               "rules": len(config.rules), "digest": config.digest,
                               "command_auth": config.commands.auth}))
    else:
        click.echo(t("config.ok", file=file, buses=len(config.buses),
                     devices=len(config.devices), points=points, rules=len(config.rules)))
        if config.mqtt.tls is None:
            click.echo(t("config.tls_off", file=file), err=True)
        click.echo(t("config.command_auth", file=file, auth=config.commands.auth))
        if config.commands.auth == "unsigned-allow":
            click.echo(t("config.unsigned_allow", file=file), err=True)
        elif config.commands.auth == "unsigned-readonly":
            click.echo(t("config.unsigned_readonly", file=file), err=True)


@config_group.command("show")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
              show_default=True)
def config_show(config_path: Path) -> None:
    """Print the effective config (defaults filled in, secrets masked) as JSON.

    \b
    Example:  batigate config show | jq .mqtt
    """
    from agent.config.redact import effective  # noqa: PLC0415

    click.echo(json.dumps(effective(load_or_exit(config_path)), indent=2))


@main.command()
@click.option("--seconds", type=float, default=0, help="stop by itself after this long (0: never)")
@click.option("--log", "raw_log", is_flag=True,
              help="the raw message stream instead of the dashboard")
@click.option("--speed", type=click.FloatRange(0.1, 100), default=1.0, show_default=True,
              help="play the fault scenario this many times faster")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the config and the outbox in this new folder (for meters export)")
def demo(seconds: float, raw_log: bool, speed: float, keep: Path | None) -> None:
    """Simulated building + local broker + agent, on a live dashboard. Ctrl-C stops.

    Off a terminal (or with --log) the raw MQTT messages scroll instead.

    \b
    Examples:
      batigate demo --seconds 30
      batigate demo --seconds 30 --keep /tmp/demo
      batigate meters export --config /tmp/demo/gateway.yaml --month 2026-11 --csv
    """
    from agent.sim import demo as demo_mod  # noqa: PLC0415

    sys.exit(asyncio.run(demo_mod.run(seconds, log=raw_log, speed=speed, keep=keep)))


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


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
def completion(shell: str) -> None:
    """Print the shell completion script (commands, options, device and point names).

    \b
    Examples:
      eval "$(batigate completion bash)"                 # this shell
      batigate completion bash > /etc/bash_completion.d/batigate
    """
    from click.shell_completion import get_completion_class  # noqa: PLC0415

    cls = get_completion_class(shell)
    assert cls is not None  # the Choice above only offers shells click supports
    click.echo(cls(main, {}, "batigate", "_BATIGATE_COMPLETE").source())


for _command in (init, scan_group, read, write, status, buffer_group, selftest, provision, sim,
                 wmbus_group, release_group, meters_group):
    main.add_command(_command)
register_remote(main, remote_config_group, remote_update)
