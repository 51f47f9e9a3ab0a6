"""`batigate buffer stats|export`: what waits in the outbox, and a copy of it in open formats.

The export reads the SQLite file read-only (WAL allows it while the agent writes), so the
landlord's data stays retrievable from a gateway whose backend is gone: JSON lines keep every
message as published (envelope fields and SenML records), CSV has one reading per row.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from agent.cli.common import (EXIT_CONFIG, EXIT_FAILURE, config_option, console, emit_json, fail,
                              json_option, load_or_exit, progress)

CSV_COLUMNS = ("seq", "ts", "time", "topic", "device", "point", "value", "unit", "quality")


@click.group("buffer")
def buffer_group() -> None:
    """Inspect and export the outbox."""


@buffer_group.command("stats")
@config_option
@json_option
def buffer_stats(config_path: Path, as_json: bool) -> None:
    """Depth, oldest age and sequence range of the outbox.

    \b
    Example:  batigate buffer stats --json
    """
    import time  # noqa: PLC0415

    from agent.store.outbox import Outbox  # noqa: PLC0415

    config = load_or_exit(config_path)
    outbox = Outbox(config.buffer.path, max_bytes=int(config.buffer.max_mb * 2**20),
                    commit_interval=config.buffer.commit_interval, clock=time.time)
    try:
        stats = outbox.stats()
    finally:
        outbox.close()
    if as_json:
        click.echo(json.dumps(stats))
    else:
        for label, value in human_stats(stats):
            click.echo(f"{label:>28}: {value}")


# The stats a technician reads first, labelled in their language; the others keep their key.
STAT_LABELS = ("depth", "alarms", "events", "telemetry", "oldest_age", "bytes", "max_bytes",
               "dropped", "expired", "fault")


def human_stats(stats: dict[str, object]) -> list[tuple[str, str]]:
    from agent.display.units import age, number  # noqa: PLC0415
    from agent.i18n import t  # noqa: PLC0415

    out = []
    for key, value in stats.items():
        label = t(f"buffer.stat.{key}") if key in STAT_LABELS else key
        if key == "oldest_age" and isinstance(value, int | float):
            shown = age(value) if stats.get("depth") else "—"
        elif key in ("bytes", "max_bytes", "memory_bytes", "write_bytes") and \
                isinstance(value, int | float):
            shown = f"{number(value / 2**20, 1)} MB"
        else:
            shown = "—" if value is None else str(value)
        out.append((label, shown))
    return out


def parse_when(text: str | None, now: float) -> float | None:
    """`2026-11-28`, `2026-11-28T14:00` (UTC unless an offset is given), an epoch, or an age
    such as `2h`, `7d` (that long ago)."""
    if text is None:
        return None
    from agent.sdk.durations import parse_duration  # noqa: PLC0415
    from agent.i18n import t  # noqa: PLC0415

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text)
        except ValueError:
            raise click.BadParameter(t("buffer.bad_time", text=text)) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@buffer_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--since", help="from this time: 2026-11-28T00:00, an epoch, or an age (24h)")
@click.option("--until", help="up to this time (same forms)")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="file (default: stdout)")
@config_option
@json_option
def buffer_export(fmt: str, since: str | None, until: str | None, output: Path | None,
                  config_path: Path, as_json: bool) -> None:
    """Export the messages waiting in the outbox for a time range, as JSON lines or CSV.

    `--json` prints a summary (rows, file) instead of the table when --output is given.

    \b
    Examples:
      batigate buffer export --since 24h -o /media/usb/gw-0042.jsonl
      batigate buffer export --format csv --since 2026-11-01 --until 2026-11-08 -o week.csv
    """
    import time  # noqa: PLC0415

    from agent.i18n import t  # noqa: PLC0415

    config = load_or_exit(config_path)
    now = time.time()
    start, end = parse_when(since, now), parse_when(until, now)
    if start is not None and end is not None and start > end:
        fail(t("buffer.since_after_until"), EXIT_CONFIG, as_json=as_json)
    path = Path(config.buffer.path)
    if not path.exists():
        fail(t("buffer.no_outbox", path=path), EXIT_FAILURE, as_json=as_json)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        fail(t("buffer.cannot_open", path=path, error=exc), EXIT_FAILURE, as_json=as_json)
    try:
        root = config.root
        where, params = _range(start, end)
        total = db.execute(f"SELECT COUNT(*) FROM outbox {where}", params).fetchone()[0]  # noqa: S608 - fixed clauses
        rows = db.execute(f"SELECT seq, topic, ts, sess, mid, body FROM outbox {where} "  # noqa: S608
                          "ORDER BY seq", params)
        out: TextIO = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
        try:
            count = _write(rows, out, fmt, root, total, show=output is not None and not as_json)
        finally:
            if output:
                out.close()
    except sqlite3.Error as exc:
        fail(t("buffer.cannot_read", path=path, error=exc), EXIT_FAILURE, as_json=as_json)
    finally:
        db.close()
    if output is not None:
        if as_json:
            emit_json({"ok": True, "messages": total, "rows": count, "file": str(output),
                       "format": fmt})
        else:
            console(err=True).print(t("buffer.written", total=total, count=count, output=output))


def _range(start: float | None, end: float | None) -> tuple[str, list[float]]:
    clauses, params = [], []
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append("ts <= ?")
        params.append(end)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _write(rows: Any, out: TextIO, fmt: str, root: str, total: int, show: bool) -> int:
    from agent.i18n import t  # noqa: PLC0415

    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    with progress() as bar:
        task = bar.add_task(t("buffer.exporting"), total=total, visible=show)
        for seq, topic, ts, sess, mid, body in rows:
            fields = json.loads(body)
            if writer is None:
                out.write(json.dumps({"seq": seq, "topic": f"{root}/{topic}", "ts": ts,
                                      "sess": sess, "mid": mid, **fields},
                                     separators=(",", ":")) + "\n")
                count += 1
            else:
                for row in _csv_rows(seq, f"{root}/{topic}", ts, fields):
                    writer.writerow(row)
                    count += 1
            bar.advance(task)
    return count


def _csv_rows(seq: int, topic: str, ts: float, fields: dict[str, Any]) -> Iterator[list[Any]]:
    """One row per SenML record (telemetry); one row with the JSON body for anything else."""
    records = fields.get("e")
    iso = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
    if not isinstance(records, list):
        yield [seq, ts, iso, topic, "", "", json.dumps(fields, separators=(",", ":")), "", ""]
        return
    base_name, base_time = "", None
    for record in records:
        base_name = record.get("bn", base_name)
        base_time = record.get("bt", base_time)
        device = base_name.rstrip(":").rsplit(":", 1)[-1] if base_name else ""
        value = next((record[k] for k in ("v", "vb", "vs") if k in record), "")
        when = (base_time or ts) + record.get("t", 0)
        yield [seq, when, dt.datetime.fromtimestamp(when, dt.UTC).isoformat(), topic, device,
               record.get("n", ""), value, record.get("u", ""), record.get("q", "good")]
    # Points of the poll without a value are no SenML record: listed apart in `bad`.
    device = topic.rsplit("/", 2)[-2] if topic.endswith("/tm") else ""
    for missing in fields.get("bad") or []:
        yield [seq, ts, iso, topic, device, missing.get("n", ""), "", "", "bad"]
