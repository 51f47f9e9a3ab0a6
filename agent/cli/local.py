"""`batigate read`, `write` and `status`: the running agent first, the bus only when it is not.

A field bus has one master. When the agent runs, a read or write goes through its control socket
and waits for the bus lock like any poll; only when no agent answers does the CLI open the bus
itself (a technician commissioning a gateway before the service is started).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from agent.cli.common import (EXIT_CONFIG, EXIT_FAILURE, complete_device, complete_point,
                              config_option, console, emit_json, fail, json_option, load_or_exit,
                              run)

socket_option = click.option("--socket", "socket_path", type=click.Path(path_type=Path),
                             default=None, help="the agent's control socket (default: "
                                                "control.socket of the config)")


# -- read -----------------------------------------------------------------------------------------

@click.command("read")
@click.argument("device", shell_complete=complete_device)
@click.argument("point", required=False, shell_complete=complete_point)
@config_option
@socket_option
@json_option
def read(device: str, point: str | None, config_path: Path, socket_path: Path | None,
         as_json: bool) -> None:
    """Read DEVICE (every point) or one POINT now, with units and quality.

    Goes through the running agent (so the bus is never shared); opens the bus itself only
    when no agent runs.

    \b
    Examples:
      batigate read vmc-b
      batigate read vmc-b exhaust_pressure --json
    """
    config = load_or_exit(config_path)
    dev = _device_or_exit(config, device, point)
    sock = socket_path or config.control.socket
    result, via = run(_read(config, dev, point, sock))
    if "error" in result:
        fail(result["error"], EXIT_FAILURE, as_json=as_json, via=via)
    if as_json:
        emit_json({"ok": True, "via": via, **result})
        return
    from rich.table import Table  # noqa: PLC0415

    from agent.display.units import human  # noqa: PLC0415
    from agent.i18n import t  # noqa: PLC0415

    units = {p.name: p.display_unit for p in dev.points if getattr(p, "display_unit", None)}
    table = Table(title=t("read.title", dev=dev.id, via=via))
    reasons = any(item.get("reason") for item in result["points"])
    for column in ("point", "value", "unit", "quality", *(("why",) if reasons else ())):
        table.add_column(t("read.col." + column))
    for item in result["points"]:
        quality = item["q"]
        style = {"good": "green", "uncertain": "yellow"}.get(quality, "red")
        why = (item.get("reason") or "",) if reasons else ()
        value, unit = human(item["v"], item["u"], units.get(item["n"]))
        table.add_row(item["n"], value, unit, f"[{style}]{t('quality.' + quality)}[/]", *why)
    console().print(table)


def _device_or_exit(config: Any, device: str, point: str | None) -> Any:
    from agent.i18n import t  # noqa: PLC0415

    found = next((d for d in config.devices if d.id == device), None)
    if found is None:
        known = ", ".join(d.id for d in config.devices) or t("none")
        fail(t("read.unknown_device", device=device, known=known), EXIT_CONFIG)
    if point is not None and not any(p.name == point for p in found.points):
        known = ", ".join(p.name for p in found.points) or t("none")
        fail(t("read.unknown_point", device=device, point=point, known=known), EXIT_CONFIG)
    return found


async def _read(config: Any, device: Any, point: str | None,
                sock: Path) -> tuple[dict[str, Any], str]:
    from agent.runtime import control  # noqa: PLC0415

    try:
        if point is None:
            answer = await control.request(sock, control.DEVICE_READ_OP, {"dev": device.id})
        else:
            answer = await control.request(sock, "point.read", {"dev": device.id, "n": point})
    except control.NotRunning:
        return await _read_direct(config, device, point), "bus"
    except control.ControlError as exc:
        return {"error": str(exc)}, "agent"
    if answer.get("status") != "succeeded":
        return {"error": answer.get("error", "failed")}, "agent"
    result = answer["result"]
    if point is not None:
        result = {"dev": result["dev"], "ts": result["ts"],
                  "points": [{k: result[k] for k in ("n", "v", "u", "q", "reason")
                              if k in result}]}
    return result, "agent"


async def _read_direct(config: Any, device: Any, point: str | None) -> dict[str, Any]:
    import time  # noqa: PLC0415

    from agent.sdk import registry  # noqa: PLC0415
    from agent.sdk.errors import DriverError  # noqa: PLC0415
    from agent.runtime.normalize import Normalizer  # noqa: PLC0415

    bus = config.bus(device.bus)
    ceiling = device.timeout * (2 + len(device.points)) + 1.0
    try:
        async with registry.load(registry.DRIVERS, bus.driver)(bus) as driver:
            async with asyncio.timeout(ceiling):
                values = list(await driver.poll(device))
    except (DriverError, TimeoutError) as exc:
        why = str(exc) or "timeout"
        if why.startswith(("serial port", "cannot open serial port")):
            return {"error": f"{device.id}: {why}"}  # the bus never opened: nothing was asked
        return {"error": f"{device.id} did not answer: {why}"}
    ts = time.time()
    readings = Normalizer(device).readings(values, ts)
    return {"dev": device.id, "ts": round(ts, 3),
            "points": [{"n": r.name, "v": r.value, "u": r.unit, "q": r.quality.value,
                        **({"reason": r.reason} if r.reason else {})}
                       for r in readings if point is None or r.name == point]}


# -- write ----------------------------------------------------------------------------------------

@click.command("write")
@click.argument("device", shell_complete=complete_device)
@click.argument("point", shell_complete=complete_point)
@click.argument("value")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@config_option
@socket_option
@json_option
def write(device: str, point: str, value: str, yes: bool, config_path: Path,
          socket_path: Path | None, as_json: bool) -> None:
    """Write VALUE to a writable POINT of DEVICE, after a confirmation.

    VALUE is in the unit the config declares (true/false for a bool point); min/max apply.

    \b
    Examples:
      batigate write vmc-b pressure_setpoint 130
      batigate write vmc-b fan_enable false --yes --json
    """
    from agent.i18n import t  # noqa: PLC0415
    from agent.sdk.writes import WriteRefused, check_write  # noqa: PLC0415

    config = load_or_exit(config_path)
    dev = _device_or_exit(config, device, point)
    pt = next(p for p in dev.points if p.name == point)
    parsed = _parse_value(pt, value)
    try:
        check_write(pt, parsed, dev)  # the same check as the point.write command and the driver
    except WriteRefused as exc:
        fail(exc.translated(), EXIT_CONFIG, as_json=as_json)
    if not yes:
        click.confirm(t("write.confirm", value=parsed, unit=pt.unit or "", dev=dev.id,
                        point=pt.name, bus=dev.bus, address=dev.address), abort=True, err=True)
    sock = socket_path or config.control.socket
    error, via = run(_write(config, dev, pt, parsed, sock))
    if error:
        fail(error, EXIT_FAILURE, as_json=as_json, via=via)
    if as_json:
        emit_json({"ok": True, "via": via, "dev": dev.id, "n": pt.name, "v": parsed})
    else:
        click.echo(t("write.done", dev=dev.id, point=pt.name, value=parsed, unit=pt.unit or "",
                     via=via))


def _parse_value(point: Any, text: str) -> bool | float | int:
    from agent.i18n import t  # noqa: PLC0415

    if point.is_boolean():
        lowered = text.strip().lower()
        if lowered in ("true", "on", "1", "yes"):
            return True
        if lowered in ("false", "off", "0", "no"):
            return False
        fail(t("write.bool", point=point.name, text=text), EXIT_CONFIG)
    try:
        number = float(text)
    except ValueError:
        fail(t("write.not_number", text=text), EXIT_CONFIG)
    return int(number) if number.is_integer() else number


async def _write(config: Any, device: Any, point: Any, value: bool | float | int,
                 sock: Path) -> tuple[str | None, str]:
    from agent.runtime import control  # noqa: PLC0415

    try:
        answer = await control.request(sock, "point.write",
                                       {"dev": device.id, "n": point.name, "v": value})
    except control.NotRunning:
        return await _write_direct(config, device, point, value), "bus"
    except control.ControlError as exc:
        return str(exc), "agent"
    if answer.get("status") != "succeeded":
        return str(answer.get("error", "failed")), "agent"
    return None, "agent"


async def _write_direct(config: Any, device: Any, point: Any,
                        value: bool | float | int) -> str | None:
    from agent.sdk import registry  # noqa: PLC0415
    from agent.sdk.errors import DriverError  # noqa: PLC0415

    bus = config.bus(device.bus)
    try:
        async with registry.load(registry.DRIVERS, bus.driver)(bus) as driver:
            async with asyncio.timeout(device.timeout * 3 + 1.0):
                await driver.write(device, point, value)
    except (DriverError, TimeoutError) as exc:
        return f"{device.id}/{point.name}: {exc or 'timeout'}"
    return None


# -- status ---------------------------------------------------------------------------------------

@click.command("status")
@config_option
@socket_option
@json_option
@click.option("--watch", is_flag=True, help="the live dashboard, redrawn every second until "
                                            "Ctrl-C (one line per change when not a terminal)")
@click.option("--every", type=click.FloatRange(0.2, 60), default=1.0, show_default=True,
              help="seconds between two refreshes of --watch")
def status(config_path: Path, socket_path: Path | None, as_json: bool, watch: bool,
           every: float) -> None:
    """Ask the running agent how it is: broker, devices, alarms, outbox, clock, certificate.

    Exit code 1 when no agent answers.

    \b
    Examples:
      batigate status
      batigate status --watch
      batigate status --json | jq .outbox.depth
    """
    from agent.runtime import control  # noqa: PLC0415
    from agent.cli.common import control_path  # noqa: PLC0415

    sock = control_path(config_path, socket_path)
    body = _ask(sock, control.SNAPSHOT_OP if watch else control.STATUS_OP, as_json)
    if watch and not as_json:
        run(_watch(sock, every))
        return
    if as_json:
        emit_json({"ok": True, **body})
        return
    _print_status(body)


def _ask(sock: Path, op: str, as_json: bool = False) -> dict[str, Any]:
    from agent.runtime import control  # noqa: PLC0415
    from agent.i18n import t  # noqa: PLC0415

    try:
        answer = run(control.request(sock, op))
    except control.NotRunning:
        fail(t("status.not_running", sock=sock), EXIT_FAILURE, as_json=as_json)
    except control.ControlError as exc:
        fail(str(exc), EXIT_FAILURE, as_json=as_json)
    if answer.get("status") != "succeeded":
        fail(str(answer.get("error")), EXIT_FAILURE, as_json=as_json)
    return dict(answer["result"])


async def _watch(sock: Path, every: float) -> None:
    """The dashboard of the running agent, fed by the control socket's `snapshot` op."""
    import signal  # noqa: PLC0415

    from agent.runtime import control  # noqa: PLC0415
    from agent.display.dashboard import show_live, show_plain  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def fetch() -> dict[str, Any] | None:
        try:
            answer = await control.request(sock, control.SNAPSHOT_OP, timeout=5.0)
        except (control.NotRunning, control.ControlError):
            return None  # the agent restarts: the screen says it waits
        except ValueError:  # an answer over control.MAX_LINE (a site of thousands of points)
            return None
        return answer.get("result") if answer.get("status") == "succeeded" else None

    out = console()
    if out.is_terminal:
        await show_live(fetch, stop, console=out, refresh=every)
    else:
        await show_plain(fetch, stop, click.echo, refresh=every)


def _print_status(body: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415

    from agent.display.units import age  # noqa: PLC0415
    from agent.i18n import t  # noqa: PLC0415

    out = console()
    broker = body["broker"]
    link = (f"[green]{t('status.connected')}[/]" if broker["connected"] else
            f"[red]{t('status.not_connected')}[/]")
    out.print(t("status.head", gw=f"[bold]{body['gw']}[/]", site=body["site"], sess=body["sess"],
                age=age(body["uptime"])))
    out.print(t("status.broker", host=broker["host"], port=broker["port"],
                tls="TLS" if broker["tls"] else t("status.no_tls"), link=link,
                connections=broker["connections"], published=broker["published"]))
    if not broker["connected"] and broker["last_error"]:
        out.print(t("status.last_error", error=broker["last_error"]))
    auth = body.get("command_auth")  # an agent of an earlier version does not say
    if auth is not None:
        colour = {"signed": "green", "signed-writes": "green",
                  "unsigned-readonly": "yellow"}.get(auth, "red")
        out.print(t("status.commands", auth=f"[{colour}]{auth}[/]"))
    outbox = body["outbox"]
    out.print(t("status.outbox", depth=outbox["depth"], oldest=age(outbox["oldest_age"]))
              + (t("status.dropped", count=outbox["dropped"]) if outbox["dropped"] else ""))
    synced = body["clock_synced"]
    out.print(t("status.clock") + (f"[green]{t('status.synced')}[/]" if synced else
                                   f"[yellow]{t('status.not_synced')}[/]"))
    cert = body["cert"]
    days = cert["days_left"]
    if cert["path"] is None:
        out.print(t("status.no_cert"))
    else:
        colour = "red" if days is None or days < 7 else "yellow" if days < 30 else "green"
        shown = t("status.unreadable") if days is None else t("status.days_left", days=days)
        out.print(t("status.cert", path=cert["path"], shown=f"[{colour}]{shown}[/]"))
    table = Table(title=t("status.devices"))
    for column in ("device", "bus", "state", "last", "polls", "failures", "error"):
        table.add_column(t("status.col." + column))
    for dev in body["devices"]:
        colour = {"ok": "green", "down": "red"}.get(dev["state"], "yellow")
        state = dev["state"]
        shown = t("state." + state) if state in ("ok", "down", "unknown") else state
        table.add_row(dev["id"], dev["bus"], f"[{colour}]{shown}[/]",
                      age(dev["last_reading_age"]), str(dev["polls"]), str(dev["failures"]),
                      dev["last_error"] or "")
    out.print(table)
    alarms = body["alarms"]
    if alarms:
        table = Table(title=t("status.alarms"))
        for column in ("alarm", "severity", "state", "since"):
            table.add_column(t("status.col." + column))
        import time  # noqa: PLC0415

        for alarm in alarms:
            since = alarm.get("raised_at") or alarm.get("since")
            severity = str(alarm.get("severity", ""))
            state = t("status.acked") if alarm.get("acked") else t("status.active")
            table.add_row(str(alarm.get("alarm", alarm.get("id"))),
                          t("severity." + severity) if severity in (
                              "critical", "major", "minor", "warning", "info") else severity,
                          state, age(time.time() - since) if isinstance(since, int | float)
                          else "")
        out.print(table)
    else:
        out.print(t("status.no_alarm"))
