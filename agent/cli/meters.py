"""`batigate meters export --month YYYY-MM [--csv|--json]`: the month's indexes for billing."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import click

from agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, config_option, fail, load_or_exit
from agent.i18n import t


@click.group("meters")
def meters_group() -> None:
    """The meters' boundary indexes (billing)."""


@meters_group.command("export")
@click.option("--month", required=True, help="the month to bill, YYYY-MM (e.g. 2026-11)")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one line per meter")
@click.option("--json", "as_json", is_flag=True, help="JSON, one object per meter")
@config_option
def meters_export(month: str, as_csv: bool, as_json: bool, config_path: Path) -> None:
    """One line per meter: dwelling, meter id, medium, start and end index of the month with the
    provenance of each (meter's stored value, closest reading, or interpolated), consumption.

    Read from the gateway's own store, so it works without the backend.

    \b
    Examples:
      batigate meters export --month 2026-11
      batigate meters export --month 2026-11 --csv > 2026-11.csv
    """
    from agent.billing import export  # noqa: PLC0415

    if as_csv and as_json:
        fail(t("meters.csv_and_json"), EXIT_CONFIG)
    config = load_or_exit(config_path)
    path = Path(config.buffer.path)
    if not path.exists():
        fail(t("meters.no_outbox", path=path), EXIT_FAILURE, as_json=as_json)
    try:
        db = export.open_history(path)
        try:
            rows = export.month_rows(db, config, month)
        finally:
            db.close()
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG, as_json=as_json)
    except sqlite3.Error as exc:
        fail(t("buffer.cannot_read", path=path, error=exc), EXIT_FAILURE, as_json=as_json)
    if as_json:
        click.echo(json.dumps({"month": month, "meters": rows}, indent=1))
    elif as_csv:
        export.write_csv(rows, sys.stdout)
    else:
        _table(month, rows)


def _table(month: str, rows: list[dict]) -> None:  # type: ignore[type-arg]
    from rich.table import Table  # noqa: PLC0415

    from agent.cli.common import console  # noqa: PLC0415

    table = Table(title=t("meters.title", month=month))
    for column in ("dwelling", "meter", "medium", "start", "end", "consumption"):
        table.add_column(t(f"meters.col.{column}"))
    for row in rows:
        start, end, used = row["start"], row["end"], row["consumption"] or {}
        table.add_row(row["dwelling"] or "—", f"{row['device']} {row['meter'] or ''}".strip(),
                      row["medium"] or "—",
                      f"{start['x'] or '—'} {start['unit'] or ''}\n{_how(start['provenance'])}",
                      f"{end['x'] or '—'} {end['unit'] or ''}\n{_how(end['provenance'])}",
                      f"{used.get('x', '—')} {used.get('unit') or ''}")
    console().print(table)


def _how(provenance: str) -> str:
    """`meter 2026-11-01`, `reading -120s`, `interpolated A..B`, `missing` (the export's words,
    kept as they are in CSV and JSON) in the technician's language for the table."""
    word, _, rest = provenance.partition(" ")
    if word in ("meter", "reading", "interpolated", "missing"):
        return t(f"meters.how.{word}", rest=rest).strip()
    return provenance
