"""`batigate selftest`: is this gateway ready? Config, certificates, serial ports, broker, outbox.

Each check answers ok / warn / fail and, when not ok, what to do about it: the reader is on site
with a laptop, not in front of the code. Exit code 1 when any check fails, 2 for an invalid config.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from agent.cli.common import (EXIT_FAILURE, config_option, console, emit_json, json_option,
                              load_or_exit, run)
from agent.i18n import english, t


@dataclass
class Check:
    name: str
    result: str  # ok | warn | fail
    detail: str
    fix: str = ""


@click.command("selftest")
@config_option
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="seconds for each network check")
@json_option
def selftest(config_path: Path, timeout: float, as_json: bool) -> None:
    """Check the config, certificates, serial ports, broker reachability and the outbox, and
    say what to fix.

    \b
    Examples:
      batigate selftest
      batigate selftest --json | jq '.checks[] | select(.result != "ok")'
    """
    config = load_or_exit(config_path)
    checks = [Check("config", "ok", t("selftest.detail.config", path=config_path,
                                      buses=len(config.buses), devices=len(config.devices)))]
    checks += certificate_checks(config)
    if as_json:
        checks += run(_network_checks(config, timeout))
    else:
        with console(err=True).status(t("selftest.checking")):
            checks += run(_network_checks(config, timeout))
    checks += outbox_checks(config)
    failed = any(c.result == "fail" for c in checks)
    if as_json:
        # --json stays English: the detail and fix messages were made by t() and know their key
        emit_json({"ok": not failed, "checks": [
            {**asdict(c), "detail": english(c.detail), "fix": english(c.fix)} for c in checks]})
    else:
        _print(checks)
    if failed:
        raise SystemExit(EXIT_FAILURE)


def certificate_checks(config: Any) -> list[Check]:
    from agent.lifecycle import cert_watch as watch  # noqa: PLC0415
    from provisioning import diagnose  # noqa: PLC0415

    tls = config.mqtt.tls
    if tls is None:
        return [Check("tls", "warn", t("selftest.detail.tls_off"), t("selftest.fix.tls_off"))]
    out: list[Check] = []
    if tls.cert is None:
        out.append(Check("certificate", "warn", t("selftest.detail.no_cert"),
                         t("selftest.fix.no_cert")))
    problems = diagnose.local_problems(tls, config.gateway.id)
    for problem in problems:
        out.append(Check("certificate", "fail", problem, t("selftest.fix.cert_problem")))
    if tls.cert is not None and not problems:
        import time  # noqa: PLC0415

        soon = watch.expiring(Path(tls.cert), time.time())
        if soon is not None:
            out.append(Check("certificate", "warn",
                             t("selftest.detail.expires", date=soon["not_after"],
                               days=soon["days_left"]), t("selftest.fix.renew")))
        else:
            out.append(Check("certificate", "ok", t("selftest.detail.cert_ok", cert=tls.cert)))
    if tls.key is not None and Path(tls.key).exists():
        mode = stat.S_IMODE(Path(tls.key).stat().st_mode)
        if mode & 0o077:
            out.append(Check("key", "fail", t("selftest.detail.key_mode", key=tls.key,
                                              mode=f"{mode:o}"),
                             t("selftest.fix.key_mode", key=tls.key)))
    return out


async def _network_checks(config: Any, timeout: float) -> list[Check]:
    from provisioning import diagnose  # noqa: PLC0415

    checks = [await _bus_check(bus, timeout) for bus in config.buses]
    result = await diagnose.broker(config, timeout=timeout)
    checks.append(Check("broker", "ok" if result.ok else "fail", result.message,
                        "" if result.ok else _broker_fix(result.stage)))
    return checks


def _broker_fix(stage: str) -> str:
    known = ("connect", "tls-server", "tls-client", "mqtt")
    return t(f"selftest.fix.broker.{stage}") if stage in known else ""


async def _bus_check(bus: Any, timeout: float) -> Check:
    name = f"bus {bus.id}"
    port = getattr(bus, "port", None)
    host = getattr(bus, "host", None)
    if isinstance(port, str) and port.startswith("socket://"):
        parts = urlsplit(port)
        host, port = parts.hostname, parts.port
    if host:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, int(port or 502))
            writer.close()
        except (OSError, TimeoutError) as exc:
            return Check(name, "fail", t("selftest.detail.unreachable", host=host, port=port,
                                         error=str(exc) or t("selftest.detail.timeout")),
                         t("selftest.fix.unreachable"))
        return Check(name, "ok", t("selftest.detail.reachable", host=host, port=port))
    if isinstance(port, str):
        path = Path(port)
        if not path.exists():
            return Check(name, "fail", t("selftest.detail.no_serial", port=port),
                         t("selftest.fix.no_serial"))
        if not os.access(path, os.R_OK | os.W_OK):
            return Check(name, "fail", t("selftest.detail.serial_perm", port=port),
                         t("selftest.fix.serial_perm"))
        return Check(name, "ok", t("selftest.detail.serial_ok", port=port))
    return Check(name, "ok", t("selftest.detail.driver", driver=bus.driver))


def outbox_checks(config: Any) -> list[Check]:
    path = Path(config.buffer.path)
    folder = path.parent
    if not folder.exists():
        return [Check("outbox", "warn", t("selftest.detail.no_folder", folder=folder),
                      t("selftest.fix.no_folder"))]
    if not os.access(folder, os.W_OK):
        return [Check("outbox", "fail", t("selftest.detail.folder_perm", folder=folder),
                      t("selftest.fix.folder_perm"))]
    checks: list[Check] = []
    free = os.statvfs(folder)
    free_mb = free.f_bavail * free.f_frsize / 2**20
    if free_mb < config.buffer.max_mb:
        checks.append(Check("disk", "warn", t("selftest.detail.disk", free=f"{free_mb:.0f}",
                                              max=f"{config.buffer.max_mb:g}"),
                            t("selftest.fix.disk")))
    if not path.exists():
        return [*checks, Check("outbox", "ok", t("selftest.detail.outbox_new", path=path))]
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            depth, oldest = db.execute("SELECT COUNT(*), MIN(ts) FROM outbox").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [*checks, Check("outbox", "fail", t("selftest.detail.outbox_error", path=path,
                                                   error=exc),
                               t("selftest.fix.outbox_broken"))]
    if verdict != "ok":
        return [*checks, Check("outbox", "fail", t("selftest.detail.outbox_damaged", path=path,
                                                   verdict=verdict),
                               t("selftest.fix.outbox_damaged"))]
    import time  # noqa: PLC0415

    waiting = "" if not depth else t("selftest.detail.oldest",
                                     hours=f"{(time.time() - oldest) / 3600:.1f}")
    return [*checks, Check("outbox", "ok", t("selftest.detail.outbox_ok", path=path, depth=depth,
                                             waiting=waiting))]


def _print(checks: list[Check]) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="selftest")
    for column in ("check", "result", "detail", "fix"):
        table.add_column(t(f"selftest.col.{column}"), overflow="fold")
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in checks:
        table.add_row(_name(check.name), f"[{colours[check.result]}]{t('selftest.' + check.result)}[/]",
                      check.detail, check.fix)
    console().print(table)


def _name(name: str) -> str:
    """The check's id (`bus rs485-1`, `outbox`; kept in --json) in the technician's language."""
    kind, _, bus = name.partition(" ")
    if kind == "bus" and bus:
        return t("selftest.name.bus", bus=bus)
    return t(f"selftest.name.{name}") if name in CHECK_NAMES else name


CHECK_NAMES = ("config", "tls", "certificate", "key", "broker", "outbox", "disk")
