"""`batigate meters export --month YYYY-MM`: one line per meter, from the stored boundary indexes.

Reads the history the agent keeps in the outbox database (read-only: WAL lets it run beside the
agent). The start and end indexes are the ones published on `idx` for the month's first midnight
and the next month's, with their `mid`, so a line can be checked against what the backend got.
The consumption is the one published with the end index (it spans a meter replacement), else the
difference of the two.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from agent.billing import boundaries
from agent.billing.meters import spec_of
from agent.billing.service import HISTORY, history_key
from agent.config.loader import Config

CSV_COLUMNS = ("dwelling", "device", "meter", "medium", "start_date", "start_index",
               "start_provenance", "end_date", "end_index", "end_provenance", "consumption",
               "unit", "consumption_senml", "senml_unit", "start_mid", "end_mid")


def provenance(record: dict[str, Any] | None, tz: ZoneInfo) -> str:
    """`meter 2026-11-01` (`meter 2026-11-30 23:59` from a meter's date-time), `reading -120s`, `interpolated 2026-10-31T22:10..2026-11-01T06:00`
    (the two readings, local time)."""
    if record is None:
        return "missing"
    src = record["src"]
    if src == "meter":  # the meter's date; its time too when it stored one off midnight
        time = record.get("meter_time")
        return f"meter {record['meter_date']}" + (f" {time[:5]}" if time and
                                                   time != "00:00:00" else "")
    if src == "reading":
        return f"reading {record['offset']:+g}s"
    before, after = (boundaries.iso(record[k]["t"], tz)[:16] for k in ("before", "after"))
    return f"interpolated {before}..{after}"


def month_rows(db: sqlite3.Connection, config: Config, month: str) -> list[dict[str, Any]]:
    tz = ZoneInfo(config.billing.timezone)
    first, after = boundaries.month_bounds(month, tz)
    start_at, end_at = boundaries.midnight(first, tz), boundaries.midnight(after, tz)
    devices = {d.id: spec_of(d) for d in config.devices}
    stored = {key.split("/")[1] for (key,) in db.execute(
        "SELECT key FROM meta WHERE key >= ? AND key < ?", (HISTORY, HISTORY[:-1] + "0"))}
    rows = []
    for dev in sorted({d for d, spec in devices.items() if spec is not None} | stored):
        start = _get(db, history_key(dev, start_at))
        end = _get(db, history_key(dev, end_at))
        spec = devices.get(dev)
        any_record = end or start or {}
        rows.append({
            "dwelling": (spec.dwelling if spec else None) or any_record.get("dwelling"),
            "device": dev,
            "meter": _meters(start, end),
            "medium": (spec.medium if spec else None) or any_record.get("medium"),
            "start": _index(start, first.isoformat(), tz),
            "end": _index(end, after.isoformat(), tz),
            "consumption": _consumption(start, end, first.isoformat()),
        })
    return rows


def _get(db: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _meters(start: dict[str, Any] | None, end: dict[str, Any] | None) -> str | None:
    ids = [r.get("meter") for r in (start, end) if r is not None and r.get("meter")]
    if len(ids) == 2 and ids[0] != ids[1]:
        return f"{ids[0]} -> {ids[1]}"  # replaced during the month
    return ids[0] if ids else None


def _index(record: dict[str, Any] | None, day: str, tz: ZoneInfo) -> dict[str, Any]:
    if record is None:
        return {"date": day, "x": None, "unit": None, "provenance": "missing"}
    return {"date": day, "x": record["x"], "unit": record["raw"]["unit"],
            "v": record["e"][0]["v"], "u": record["e"][0].get("u"),
            "provenance": provenance(record, tz), "src": record["src"], "mid": record["mid"]}


def _consumption(start: dict[str, Any] | None, end: dict[str, Any] | None,
                 first: str) -> dict[str, Any] | None:
    if end is None or start is None:
        return None
    month = (end.get("consumption") or {}).get("month")
    if month and month["from"] == first:
        return {"x": month["x"], "unit": month.get("xu"), "v": month["v"], "u": month.get("u")}
    if end["raw"]["scale"] != start["raw"]["scale"] or "cum" not in end or "cum" not in start:
        return None
    scale = Decimal(end["raw"]["scale"])
    count = Decimal(end["cum"]) - Decimal(start["cum"])
    ratio = Decimal(repr(end["e"][0]["v"])) / Decimal(end["x"]) if Decimal(end["x"]) else None
    return {"x": f"{count * scale:f}", "unit": end["raw"]["unit"],
            "v": float(count * scale * ratio) if ratio is not None else None,
            "u": end["e"][0].get("u")}


def write_csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        start, end, used = row["start"], row["end"], row["consumption"] or {}
        writer.writerow([row["dwelling"] or "", row["device"], row["meter"] or "",
                         row["medium"] or "", start["date"], start["x"] or "",
                         start["provenance"], end["date"], end["x"] or "", end["provenance"],
                         used.get("x", ""), used.get("unit") or end.get("unit") or "",
                         used.get("v", ""), used.get("u") or "", start.get("mid", ""),
                         end.get("mid", "")])


def open_history(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
