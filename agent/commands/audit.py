"""The audit trail of commands: who asked what, when, and what came of it.

Every command whose operation could be read is recorded, executed or rejected (a burst of
rejected signatures is exactly what an audit must show), in a table of the outbox's SQLite file
and on the `agent.commands.audit` logger (the journal keeps the long history). Two bounds, so that noise
cannot push out the record that matters:

- kept rows: signed commands, commands that changed something, local (control socket) commands.
  Kept `keep_days`; at most MAX_KEPT rows (only a lab gateway that runs anonymous writes can
  reach it, and then it says so in the log).
- noise: anonymous refusals and anonymous harmless commands, which anyone who can publish on
  `cmd/req` can send by the thousand: counted, logged, and the last MAX_NOISE kept in memory
  only (a flood costs no disk write, and cannot touch the kept rows).

Arguments are stored as given except for what may hold secrets: a config document is replaced by
its digest, URL credentials and query values are masked (agent.redact.urls).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sqlite3
from collections import deque
from typing import Any

from agent.config.redact import url, urls

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
MAX_KEPT = 20_000
MAX_NOISE = 1000


class AuditTrail:
    def __init__(self, db: sqlite3.Connection, *, keep_days: float = 30.0) -> None:
        self._db = db
        self.keep_seconds = keep_days * 86400
        self.noise = 0  # anonymous refusals and harmless commands seen since the start
        self._noise: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_NOISE)
        self._order = itertools.count()
        db.executescript(_SCHEMA)

    def record(self, *, ts: float, cmd_id: str | None, op: str, by: str | None, signed: bool,
               args: Any, answer: dict[str, Any], kept: bool | None = None) -> None:
        """`kept` defaults to: signed, or carried out (a local command)."""
        if kept is None:
            kept = signed or answer["status"] != "rejected"
        text = json.dumps(_scrub(op, args), separators=(",", ":"), default=str)[:MAX_ARGS_CHARS]
        status, code, error = answer["status"], answer["code"], answer.get("error")
        error = url(str(error)) if error else None
        log.info("command %s op=%s by=%s signed=%s -> %s %s%s", cmd_id, op, by or "?", signed,
                 status, code, f" ({error})" if error else "")
        if not kept:
            self.noise += 1
            self._noise.append((next(self._order), {
                "ts": ts, "id": cmd_id, "op": op, "by": by, "signed": signed, "args": text,
                "status": status, "code": code, "error": error, "kept": False}))
            return
        self._db.execute("INSERT INTO cmd_audit (ts, id, op, by, signed, args, status, code, "
                         "error) VALUES (?,?,?,?,?,?,?,?,?)",
                         (ts, cmd_id, op, by, int(signed), text, status, code, error))
        self._db.execute("DELETE FROM cmd_audit WHERE ts < ?", (ts - self.keep_seconds,))
        surplus = self._db.execute("SELECT COUNT(*) FROM cmd_audit").fetchone()[0] - MAX_KEPT
        if surplus > 0:
            log.warning("audit trail: more than %d entries in %.0f days (anonymous writes on a "
                        "lab gateway?): the oldest go", MAX_KEPT, self.keep_seconds / 86400)
            self._db.execute("DELETE FROM cmd_audit WHERE n IN (SELECT n FROM cmd_audit "
                             "ORDER BY n LIMIT ?)", (surplus,))

    def recent(self, count: int, *, noise: bool = True) -> list[dict[str, Any]]:
        """The last `count` entries, oldest first (the kept ones, and the noise in memory)."""
        rows = self._db.execute(
            "SELECT ts, id, op, by, signed, args, status, code, error FROM cmd_audit "
            "ORDER BY n DESC LIMIT ?", (count,)).fetchall()
        keys = ("ts", "id", "op", "by", "signed", "args", "status", "code", "error")
        out = [dict(zip(keys, row, strict=True), kept=True) for row in rows]
        for entry in out:
            entry["signed"] = bool(entry["signed"])
        if noise:
            out += [entry for _, entry in list(self._noise)[-count:]]
        out.sort(key=lambda e: e["ts"])
        return out[-count:]


def _scrub(op: str, args: Any) -> Any:
    if op == "config.apply" and isinstance(args, dict) and "config" in args:
        doc = args["config"]
        raw = doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True, default=str)
        args = {**args, "config": "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16]}
    return urls(args)
