"""`batigate remote`: the operations team's CLI. Runs on an operator's machine and talks to the
broker only (agent/remote/): signed commands, the fleet, alarms, config applies, staged updates.

Exit codes: 0 every gateway answered as hoped, 1 some did not (failed, rejected, no answer,
unhealthy), 2 usage, a bad file or key, or the broker cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, emit_json, fail, json_option
from agent.i18n import t

DEFAULT_KEY = "~/.config/batigate/command.key"


class Context:
    def __init__(self, options: Any, sign_key: Path | None, unsigned: bool) -> None:
        self.options = options
        self.sign_key = sign_key
        self.unsigned = unsigned

    def key(self) -> Any:
        """The command key, or None for unsigned commands (no key file, or --unsigned)."""
        from agent.remote import commands  # noqa: PLC0415

        if self.unsigned:
            return None
        path = self.sign_key or Path(DEFAULT_KEY).expanduser()
        if self.sign_key is None and not path.exists():
            click.echo(t("remote.no_key", path=path), err=True)
            return None
        try:
            return commands.load_key(path)
        except (OSError, ValueError, TypeError) as exc:
            fail(f"{path}: {exc}", EXIT_CONFIG)


def run(ctx: Context, body: Callable[[Any], Awaitable[int]]) -> None:
    """Connect, run `body(link)`, exit with its code."""
    from agent.remote import link  # noqa: PLC0415

    async def main() -> int:
        async with link.connect(ctx.options) as connected:
            return await body(connected)

    try:
        sys.exit(asyncio.run(main()))
    except ConnectionError as exc:
        fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        sys.exit(130)


def parse_args(words: tuple[str, ...], as_json: str | None) -> dict[str, Any]:
    """`key=value` words (a value that parses as JSON is taken as JSON: numbers, true, null,
    objects) or one --args JSON object."""
    out: dict[str, Any] = {}
    if as_json:
        try:
            out = json.loads(as_json)
        except ValueError as exc:
            raise click.BadParameter(t("remote.not_json", error=exc), param_hint="--args") from None
        if not isinstance(out, dict):
            raise click.BadParameter(t("remote.not_object"), param_hint="--args")
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise click.BadParameter(t("remote.bad_arg", word=word), param_hint="ARGS")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


async def targets_of(link: Any, gateway: str | None, site: str | None) -> list[Any]:
    from agent.remote import commands  # noqa: PLC0415

    if gateway is None:
        if site is None:
            raise click.UsageError(t("remote.name_gateway"))
        return await commands.site_gateways(link, site)
    if "/" in gateway:
        site_part, _, gw = gateway.partition("/")
        return [commands.Target(site_part, gw)]
    if site is not None:
        return [commands.Target(site, gateway)]
    return [await commands.locate(link, gateway)]


@click.group("remote")
@click.option("--host", envvar="BATIGATE_BROKER_HOST", default="localhost", show_default=True)
@click.option("--port", envvar="BATIGATE_BROKER_PORT", type=int, help="default 8883, 1883 --no-tls")
@click.option("--tls/--no-tls", default=True, show_default=True,
              help="--no-tls for lab brokers only")
@click.option("--ca", type=click.Path(path_type=Path, dir_okay=False), envvar="BATIGATE_BROKER_CA")
@click.option("--cert", type=click.Path(path_type=Path, dir_okay=False),
              envvar="BATIGATE_BROKER_CERT", help="client certificate (mTLS)")
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False),
              envvar="BATIGATE_BROKER_KEY", help="client key (mTLS)")
@click.option("--username", envvar="BATIGATE_BROKER_USERNAME")
@click.option("--password", envvar="BATIGATE_BROKER_PASSWORD",
              help="better from the environment: BATIGATE_BROKER_PASSWORD")
@click.option("--namespace", default="bgw/v1", show_default=True, envvar="BATIGATE_NAMESPACE")
@click.option("--sign-key", type=click.Path(path_type=Path, dir_okay=False),
              envvar="BATIGATE_COMMAND_KEY",
              help=f"Ed25519 command key (default {DEFAULT_KEY} when it exists)")
@click.option("--unsigned", is_flag=True, help="send unsigned commands even with a key")
@click.pass_context
def remote_group(ctx: click.Context, host: str, port: int | None, tls: bool, ca: Path | None,
                 cert: Path | None, key: Path | None, username: str | None,
                 password: str | None, namespace: str, sign_key: Path | None,
                 unsigned: bool) -> None:
    """The operations team's tools: signed commands, fleet, alarms, config applies, updates.

    \b
    Examples:
      batigate remote keys gen
      batigate remote --host broker.example.org --ca ca.pem cmd res-les-pins/gw-0042 ping
      batigate remote cmd --site res-les-pins buffer.stats --json
      batigate remote fleet --site res-les-pins --watch
    """
    from agent.remote.link import BrokerOptions  # noqa: PLC0415

    options = BrokerOptions(host=host, port=port or (8883 if tls else 1883), tls=tls, ca=ca,
                            cert=cert, key=key, username=username, password=password,
                            namespace=namespace.strip("/"))
    ctx.obj = Context(options, sign_key, unsigned)


@remote_group.group("keys")
def keys_group() -> None:
    """The operator's command key."""


@keys_group.command("gen")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_KEY,
              show_default=True, help="the private key (0600); KEY.pub beside it")
def keys_gen(out: Path) -> None:
    """Make an Ed25519 command key pair; give KEY.pub to the gateways (commands.public_key).

    \b
    Example:  batigate remote keys gen && scp ~/.config/batigate/command.key.pub gw:/etc/batigate/
    """
    from agent.remote import commands  # noqa: PLC0415

    try:
        public = commands.generate_key(out.expanduser())
    except FileExistsError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(t("remote.private_key", path=out.expanduser()))
    click.echo(t("remote.public_key", path=public))


@remote_group.command("cmd")
@click.argument("words", nargs=-1, required=True, metavar="[GATEWAY] OP [ARGS]...")
@click.option("--site", help="every gateway of SITE (no GATEWAY), or the site of GATEWAY")
@click.option("--args", "args_json", help="the arguments as one JSON object")
@click.option("--timeout", type=float, default=15, show_default=True,
              help="seconds for the first answer")
@click.option("--wait", "final_wait", type=float, default=900, show_default=True,
              help="seconds for the final answer after in_progress")
@click.option("--ttl", type=float, default=120, show_default=True, help="exp = now + TTL")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@json_option
@click.pass_obj
def cmd(ctx: Context, words: tuple[str, ...], site: str | None, args_json: str | None,
        timeout: float, final_wait: float, ttl: float, concurrency: int, as_json: bool) -> None:
    """Send OP to GATEWAY (SITE/GW, or GW alone) or to every gateway of --site, and wait for
    the final answers.

    \b
    Examples:
      batigate remote cmd res-les-pins/gw-0042 point.read dev=vmc-b n=exhaust_pressure
      batigate remote cmd --site res-les-pins ping --json
      batigate remote cmd gw-0042 alarm.ack alarm=vmc-b-low-depression note='on site'
    """
    from agent.remote import commands, link, render  # noqa: PLC0415

    if site is not None and len(words) >= 1 and "/" not in words[0] and (
            len(words) == 1 or "=" in words[1]):
        gateway, op, rest = None, words[0], words[1:]  # --site SITE OP [ARGS]
    elif len(words) >= 2:
        gateway, op, rest = words[0], words[1], words[2:]
    else:
        raise click.UsageError(t("remote.usage"))
    args = parse_args(rest, args_json)
    key = ctx.key()

    async def body(connected: link.Link) -> int:
        targets = await targets_of(connected, gateway, site)
        if not targets:
            fail(t("remote.no_gateway", site=site), EXIT_FAILURE, as_json=as_json)
        sender = commands.Sender(connected, key=key, by=link.operator_name(), ttl=ttl,
                                 first_timeout=timeout, final_timeout=final_wait,
                                 concurrency=concurrency)
        try:
            done = await sender.run_many(targets, op, args)
        finally:
            await sender.close()
        if as_json:
            emit_json({"ok": all(r.ok for r in done), "op": op, "signed": key is not None,
                       "summary": commands.summary(done), "results": [r.as_dict() for r in done]})
        else:
            render.results(op, done)
        return 0 if all(r.ok for r in done) else EXIT_FAILURE

    run(ctx, body)


@remote_group.command("fleet")
@click.option("--site", help="one site (default: all)")
@click.option("--watch", is_flag=True, help="redraw as the gateways publish (Ctrl-C stops)")
@click.option("--health-wait", type=float, default=5, show_default=True,
              help="seconds to wait for each online gateway's next health (it is not retained)")
@click.option("--seconds", type=float, default=0, help="with --watch: stop after this long")
@json_option
@click.pass_obj
def fleet(ctx: Context, site: str | None, watch: bool, health_wait: float, seconds: float,
          as_json: bool) -> None:
    """Every gateway: online, version, config digest, outbox, alarms, certificate days, clock.

    \b
    Examples:
      batigate remote fleet --site res-les-pins
      batigate remote fleet --watch
      batigate remote fleet --json | jq '.gateways[] | select(.online == false)'
    """
    from agent.remote import fleet as fleet_mod  # noqa: PLC0415
    from agent.remote import link, render  # noqa: PLC0415

    async def body(connected: link.Link) -> int:
        view, queue = await fleet_mod.watch(connected, site)
        await fleet_mod.until_health(view, queue, health_wait)
        if not watch:
            if as_json:
                emit_json({"gateways": view.rows()})
            else:
                render.print_renderable(render.fleet(view.rows()))
            return 0
        await follow_fleet(view, queue, seconds, as_json)
        return 0

    run(ctx, body)


async def follow_fleet(view: Any, queue: asyncio.Queue[Any], seconds: float,
                       as_json: bool) -> None:
    from rich.live import Live  # noqa: PLC0415

    from agent.remote import render  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    end = loop.time() + seconds if seconds > 0 else None
    live = None if as_json else Live(render.fleet(view.rows()), auto_refresh=False)
    if live is not None:
        live.start()
    try:
        while end is None or (left := end - loop.time()) > 0:
            try:
                seen = await asyncio.wait_for(queue.get(), None if end is None else left)
            except TimeoutError:
                break
            view.feed(seen)
            if seen.topic.endswith(("/state", "/birth", "/alarms", "/health")):
                if live is not None:
                    live.update(render.fleet(view.rows()), refresh=True)
                else:  # one JSON document per line, for a stream reader
                    emit_json({"topic": seen.topic, "gateways": view.rows()})
    finally:
        if live is not None:
            live.stop()


@remote_group.command("alarms")
@click.option("--site", help="one site (default: all)")
@click.option("--follow", is_flag=True, help="then print alarm events as they come (Ctrl-C)")
@click.option("--seconds", type=float, default=0, help="with --follow: stop after this long")
@json_option
@click.pass_obj
def alarms(ctx: Context, site: str | None, follow: bool, seconds: float, as_json: bool) -> None:
    """The active alarms of every gateway (retained snapshots), then the alarm events.

    \b
    Examples:
      batigate remote alarms --site res-les-pins
      batigate remote alarms --follow --json      # one JSON line per alarm event
    """
    from agent.remote import fleet as fleet_mod  # noqa: PLC0415
    from agent.remote import link, render  # noqa: PLC0415

    async def body(connected: link.Link) -> int:
        view, queue = await fleet_mod.watch(connected, site)
        active = view.active_alarms()
        if as_json:
            emit_json({"active": active})
        else:
            render.alarms(active)
        if not follow:
            return 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds if seconds > 0 else None
        while end is None or (left := end - loop.time()) > 0:
            try:
                seen = await asyncio.wait_for(queue.get(), None if end is None else left)
            except TimeoutError:
                break
            body_ = seen.body
            if not (seen.topic.endswith("/evt") and isinstance(body_, dict)
                    and str(body_.get("type", "")).startswith("alarm.")):
                continue
            parts = seen.topic.split("/")
            if as_json:
                emit_json({"site": parts[-3], "gateway": parts[-2], **body_})
            else:
                render.event(parts[-3], parts[-2], body_)
            sys.stdout.flush()
        return 0

    run(ctx, body)


def register(main: click.Group, *changing: click.Command) -> None:
    """`remote` under `main`, with the verbs that change what gateways run (cli_remote_ops.py,
    which builds on this module, hence given here rather than imported)."""
    for command in changing:
        remote_group.add_command(command)
    main.add_command(remote_group)
