"""A decoded telegram as JSON, and as the table `batigate mbus decode` prints."""

from __future__ import annotations

import math
import sys
from typing import Any

from drivers.mbus.codec.model import Record, Telegram, Value
from drivers.mbus.codec.telegram import decode_hex_file
from drivers.mbus.frames import MBusDecodeError


def telegram_to_json(t: Telegram) -> dict[str, Any]:
    return {**header_to_json(t), "records": [record_to_json(r) for r in t.records]}


def header_to_json(t: Any) -> dict[str, Any]:
    """The meter's identity and the telegram's status, as JSON (wired and wireless telegrams)."""
    return {
        "id": t.id,
        "manufacturer": t.manufacturer,
        "version": t.version,
        "medium": t.medium,
        "access_number": t.access_number,
        "status": t.status,
    }


def record_to_json(r: Record) -> dict[str, Any]:
    """One decoded record as JSON (wired and wireless telegrams alike)."""
    return {
        "value": _json_value(r.value),
        "unit": r.unit,
        "quantity": r.quantity,
        "function": r.function,
        "storage": r.storage,
        "tariff": r.tariff,
        "subunit": r.subunit,
    }


def _json_value(value: Value) -> Value:
    # JSON has no NaN or infinity; a meter sending them as real32 gets null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format_value(value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _render_table(path: str, t: Telegram) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # A pipe gets rich's 80 columns by default, too narrow for a record table.
    console = Console(width=max(Console().width, 110))
    console.print(
        escape(path) + f"\nid {t.id}  manufacturer {t.manufacturer or '-'}  version "
        f"{t.version if t.version is not None else '-'}  medium {t.medium or '-'}  "
        f"access {t.access_number}  status 0x{(t.status or 0):02X}",
        highlight=False,
    )
    table = Table()
    for col in ("#", "quantity", "value", "unit", "function", "storage", "tariff", "subunit"):
        table.add_column(col, justify="right" if col in ("#", "value") else "left",
                         overflow="fold")
    for i, r in enumerate(t.records):
        extra = f" [{', '.join(r.modifiers)}]" if r.modifiers else ""
        # Meter texts and modifiers may hold brackets: escape them from rich's markup.
        cells = (r.quantity + extra, _format_value(r.value), r.unit or "", r.function)
        table.add_row(str(i), *map(escape, cells), str(r.storage), str(r.tariff), str(r.subunit))
    console.print(table)
    if t.more_records_follow:
        console.print("more records follow in the next telegram (toggle the FCB)")


def main_decode(path: str, as_json: bool) -> int:
    """`batigate mbus decode FILE.hex [--json]`: 0 on success, 1 with one line on stderr."""
    import json

    try:
        telegram = decode_hex_file(path)
    except MBusDecodeError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(telegram_to_json(telegram), ensure_ascii=False))
    else:
        _render_table(path, telegram)
    return 0
