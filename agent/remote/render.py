"""Human output of the remote verbs: rich tables on stdout (scripts use --json instead)."""

from __future__ import annotations

import json
import time
from typing import Any

from agent.i18n import t
from agent.remote.commands import Result, summary

# Column ids (their headers are the messages remote.col.<id>)
RESULT_COLUMNS = ("gateway", "status", "code", "result")
FLEET_COLUMNS = ("site", "gateway", "online", "version", "config", "outbox", "oldest", "alarms",
                 "cert_days", "clock", "health")
ALARM_COLUMNS = ("site", "gateway", "alarm", "severity", "where", "value", "since", "acked",
                 "message")


def _console() -> Any:
    from rich.console import Console  # noqa: PLC0415 - keep `--help` fast

    return Console(highlight=False, soft_wrap=False)


def _table(title: str, columns: tuple[str, ...]) -> Any:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(t(f"remote.col.{column}"))
    return table


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def results(op: str, done: list[Result]) -> None:
    table = _table(t("remote.results", op=op, count=len(done)), RESULT_COLUMNS)
    for r in sorted(done, key=lambda r: str(r.target)):
        row = r.as_dict()
        colour = "green" if r.ok else "red"
        table.add_row(row["gateway"], f"[{colour}]{row['status']}[/]", str(row["code"] or ""),
                      _short(row["error"] if row["error"] else row["result"]))
    console = _console()
    console.print(table)
    console.print(t("remote.summary", counts=", ".join(f"{k} {v}" for k, v in
                                                    sorted(summary(done).items()))))


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def fleet(rows: list[dict[str, Any]]) -> Any:
    table = _table(t("remote.fleet", time=time.strftime("%H:%M:%S"), count=len(rows),
                     online=sum(1 for r in rows if r["online"])), FLEET_COLUMNS)
    for r in rows:
        online = {True: f"[green]{t('value.true')}[/]",
                  False: f"[red]{t('value.false')}[/]"}.get(r["online"], "?")
        cert = r["cert_days"]
        clock = {True: t("remote.sync"),
                 False: f"[yellow]{t('remote.no_sync')}[/]"}.get(r["clock_synced"], "-")
        table.add_row(r["site"], r["gateway"], online, str(r["version"] or "-"),
                      str(r["config"] or "-"),
                      "-" if r["outbox_depth"] is None else str(r["outbox_depth"]),
                      _age(r["outbox_oldest_age"]),
                      f"[red]{r['alarms']}[/]" if r["alarms"] else "0",
                      "-" if cert is None else f"{cert:.0f}", clock,
                      "-" if r["health_age"] is None else t("remote.ago",
                                                             age=_age(r["health_age"])))
    return table


def alarms(active: list[dict[str, Any]]) -> None:
    table = _table(t("dash.alarms", count=len(active)), ALARM_COLUMNS)
    for a in active:
        since = a.get("since")
        where = "/".join(str(a[k]) for k in ("device", "point") if a.get(k))
        value = "" if a.get("value") is None else f"{a['value']} {a.get('unit', '')}".strip()
        table.add_row(a["site"], a["gateway"], str(a.get("alarm", "?")),
                      str(a.get("severity", "")), where or "-", value,
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(since))
                      if isinstance(since, int | float) else "-",
                      t("remote.acked_by", by=a.get("acked_by", "?")) if a.get("acked")
                      else t("value.false"),
                      _short(a.get("message", ""), 50))
    _console().print(table)


def event(site: str, gateway: str, body: dict[str, Any]) -> None:
    """One line per alarm event for `remote alarms --follow`."""
    ts = body.get("ts")
    when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else "?"
    _console().print(f"{when} {site}/{gateway} {body.get('type')} {body.get('alarm', '')} "
                     f"{body.get('severity', '')} {_short(body.get('message', ''), 60)}")


def print_renderable(renderable: Any) -> None:
    _console().print(renderable)
