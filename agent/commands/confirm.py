"""Remote config updates with a confirmed commit (NETCONF-style; research/standards.md §6.10).

Files beside the config (`gateway.yaml`):

    gateway.yaml          the config in force (or about to be, after the restart)
    gateway.yaml.prev     the one before the last apply: what a rollback restores
    gateway.yaml.pending  JSON: an apply waiting for `config.confirm` (deadline, digests, command)
    gateway.yaml.outcome  JSON: how the last apply ended, until it has been reported
    gateway.yaml.rejected the config a rollback put aside, for the post-mortem

Every write is temp file + fsync + rename + fsync of the directory, so a power cut leaves either
the old or the new file, never half of one. The pending record is a file, not a database row,
because it must be readable before the config (and so the database path) is trusted:
`check_at_start` runs before the config is loaded, which is what rolls back a config that makes
the agent crash before it could ever run its own probation timer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.sdk.durable import fsync_dir, read_note, write_atomic
from agent.i18n import t

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    cmd_id: str
    digest: str  # of the staged config
    prev_digest: str
    deadline: float  # epoch seconds
    by: str | None


def digest(text: str) -> str:
    """The same digest as `Config.digest`."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def stage(path: Path, text: str, *, confirm_within: float, now: float, cmd_id: str,
          by: str | None) -> Pending:
    """Keep the current file as `.prev`, put `text` in force, and note the pending confirmation.

    The pending note is written first: if power goes between the steps, the next start finds a
    pending apply and either confirms nothing (digest mismatch: it is dropped) or rolls back.
    """
    current = path.read_bytes()
    pending = Pending(cmd_id=cmd_id, digest=digest(text),
                      prev_digest=digest(current.decode("utf-8", errors="replace")),
                      deadline=now + confirm_within, by=by)
    write_atomic(_side(path, ".pending"), json.dumps(asdict(pending)).encode())
    write_atomic(_side(path, ".prev"), current)
    write_atomic(path, text.encode())
    return pending


def pending(path: Path) -> Pending | None:
    try:
        data = json.loads(_side(path, ".pending").read_bytes())
        return Pending(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        log.error("unreadable %s (%s): ignored", _side(path, ".pending"), exc)
        _remove(_side(path, ".pending"))
        return None


def has_previous(path: Path) -> bool:
    return _side(path, ".prev").exists()


def confirm(path: Path, *, now: float) -> Pending | None:
    """End the probation: the staged config stays. None when nothing was pending."""
    record = pending(path)
    if record is None:
        return None
    _record_outcome(path, record, "config.confirmed", None, now)
    _remove(_side(path, ".pending"))
    return record


def rollback(path: Path, *, reason: str, now: float) -> Pending | None:
    """Restore `.prev` (the current file is kept as `.rejected`); the agent must then restart.

    Returns the pending apply this ended, if any; raises FileNotFoundError without `.prev`.
    """
    record = pending(path)
    if record is not None and path.exists() and digest(
            path.read_bytes().decode("utf-8", "replace")) == record.prev_digest:
        # Power went before the staged file took over: the file in force is already the old one.
        _record_outcome(path, record, "config.rolled_back", reason, now)
        _remove(_side(path, ".pending"))
        return record
    previous = _side(path, ".prev").read_bytes()
    if path.exists():
        write_atomic(_side(path, ".rejected"), path.read_bytes())
    write_atomic(path, previous)
    if record is not None:
        _record_outcome(path, record, "config.rolled_back", reason, now)
        _remove(_side(path, ".pending"))
    log.warning("config rolled back to %s: %s", digest(previous.decode("utf-8", "replace")),
                reason)
    return record


def _record_outcome(path: Path, record: Pending, kind: str, reason: str | None,
                    now: float) -> None:
    body: dict[str, Any] = {"type": kind, "cmd": record.cmd_id, "digest": record.digest,
                            "prev_digest": record.prev_digest, "ts": round(now, 3)}
    if reason:
        body["reason"] = reason
    write_atomic(_side(path, ".outcome"), json.dumps(body).encode())


def take_outcome(path: Path) -> dict[str, Any] | None:
    """The outcome not reported yet; the caller reports it, then calls `forget_outcome`."""
    return read_note(_side(path, ".outcome"))


def forget_outcome(path: Path) -> None:
    _remove(_side(path, ".outcome"))


def check_at_start(path: Path, *, now: float) -> str | None:
    """Before loading the config: roll back an apply whose confirmation time has passed.

    This is what saves a gateway whose new config crashes the agent before its probation timer
    could run (systemd restarts it; once the deadline is past, this restores `.prev`).
    Returns a line for the log when it acted.
    """
    record = pending(path)
    if record is None or now < record.deadline:
        return None
    rollback(path, reason="not confirmed in time (found at start)", now=now)
    return t("run.config_rolled_back", cmd=record.cmd_id)
