"""The audit trail of commands: who asked what, when, and what came of it.

Every command whose operation could be read is recorded, executed or rejected (a burst of
rejected signatures is exactly what an audit must show). Rows go to a table of the outbox's SQLite
file, bounded to the most recent `max_rows`, and to the `agent.audit` logger (the journal keeps the
long history). Arguments are stored as given except for what may hold secrets: a config document
is replaced by its digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cmd_audit (
    n        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       REAL NOT NULL,
    id       TEXT,
    op       TEXT NOT NULL,
    by       TEXT,            -- as the request says; trustworthy only when signed is 1
    signed   INTEGER NOT NULL,
    args     TEXT NOT NULL,
    status   TEXT NOT NULL,
    code     INTEGER NOT NULL,
    error    TEXT
);
"""

MAX_ARGS_CHARS = 2000


class AuditTrail:
    def __init__(self, db: sqlite3.Connection, *, max_rows: int = 10000) -> None:
        self._db = db
        self.max_rows = max_rows
        db.executescript(_SCHEMA)

    def record(self, *, ts: float, cmd_id: str | None, op: str, by: str | None, signed: bool,
               args: Any, answer: dict[str, Any]) -> None:
        text = json.dumps(_scrub(op, args), separators=(",", ":"), default=str)[:MAX_ARGS_CHARS]
        status, code, error = answer["status"], answer["code"], answer.get("error")
        log.info("command %s op=%s by=%s signed=%s -> %s %s%s", cmd_id, op, by or "?", signed,
                 status, code, f" ({error})" if error else "")
        self._db.execute("INSERT INTO cmd_audit (ts, id, op, by, signed, args, status, code, "
                         "error) VALUES (?,?,?,?,?,?,?,?,?)",
                         (ts, cmd_id, op, by, int(signed), text, status, code, error))
        self._db.execute("DELETE FROM cmd_audit WHERE n <= (SELECT MAX(n) FROM cmd_audit) - ?",
                         (self.max_rows,))

    def recent(self, count: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT ts, id, op, by, signed, args, status, code, error FROM cmd_audit "
            "ORDER BY n DESC LIMIT ?", (count,)).fetchall()
        keys = ("ts", "id", "op", "by", "signed", "args", "status", "code", "error")
        out = [dict(zip(keys, row, strict=True)) for row in reversed(rows)]
        for entry in out:
            entry["signed"] = bool(entry["signed"])
        return out


def _scrub(op: str, args: Any) -> Any:
    if op == "config.apply" and isinstance(args, dict) and "config" in args:
        doc = args["config"]
        raw = doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True, default=str)
        return {**args, "config": "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16]}
    return args
